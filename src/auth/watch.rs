//! Files berth re-reads while running (tokens, policy): parsed once at
//! start (a bad file is a startup error), then polled; a changed file that
//! parses replaces the old contents atomically, one that does not is
//! logged and ignored, so a typo never locks everyone out.
//!
//! Polling the contents (not inotify) also sees Kubernetes' ConfigMap and
//! Secret updates, which swap a symlink rather than write the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;

/// Parses a file's text.
pub type Parser<T> = fn(&str) -> anyhow::Result<T>;

struct Shared<T> {
    current: RwLock<Arc<T>>,
    reloads: AtomicU64,
}

/// The latest good contents of a watched file.
pub struct Watched<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Watched {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Reads and parses `path` now, then re-reads it every `poll` on the
    /// current tokio runtime for as long as a clone of the result lives.
    pub fn load(
        path: &Path,
        what: &'static str,
        parse: Parser<T>,
        poll: Duration,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} file {}", path.display()))?;
        let value = parse(&text).with_context(|| format!("the {what} file {}", path.display()))?;
        let shared = Arc::new(Shared {
            current: RwLock::new(Arc::new(value)),
            reloads: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        let path: PathBuf = path.to_owned();
        tokio::spawn(async move {
            let mut last = text;
            loop {
                tokio::time::sleep(poll).await;
                let Some(shared) = weak.upgrade() else { return };
                let text = match tokio::fs::read_to_string(&path).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "cannot read the {what} file; keeping the previous one");
                        continue;
                    }
                };
                if text == last {
                    continue;
                }
                match parse(&text) {
                    Ok(v) => {
                        if let Ok(mut cur) = shared.current.write() {
                            *cur = Arc::new(v);
                        }
                        shared.reloads.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("berth_file_reloads_total", "file" => what, "result" => "ok").increment(1);
                        tracing::info!(file = %path.display(), "reloaded the {what} file");
                    }
                    Err(e) => {
                        metrics::counter!("berth_file_reloads_total", "file" => what, "result" => "error").increment(1);
                        tracing::error!(file = %path.display(), error = format!("{e:#}"), "the changed {what} file is invalid; keeping the previous one");
                    }
                }
                last = text;
            }
        });
        Ok(Watched { shared })
    }

    /// The current contents.
    pub fn get(&self) -> Arc<T> {
        match self.shared.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many times a change was loaded.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_number(s: &str) -> anyhow::Result<u32> {
        Ok(s.trim().parse()?)
    }

    #[tokio::test]
    async fn reloads_good_changes_and_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n");
        std::fs::write(&path, "1").expect("write");
        let w =
            Watched::load(&path, "test", parse_number, Duration::from_millis(20)).expect("load");
        assert_eq!(*w.get(), 1);
        std::fs::write(&path, "2").expect("write");
        for _ in 0..200 {
            if w.reloads() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*w.get(), 2);
        std::fs::write(&path, "not a number").expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*w.get(), 2);
        assert_eq!(w.reloads(), 1);
        assert!(
            Watched::load(
                &dir.path().join("missing"),
                "test",
                parse_number,
                Duration::from_secs(1)
            )
            .is_err()
        );
    }
}
