//! Where the secret keys come from: the environment, a file, or (SQLite
//! only) a key file created beside the database on first start.
//!
//! Each source may list several keys (a [`Keyring`]): the first seals new
//! secrets, the others only open secrets they sealed, so a key can be
//! rotated without downtime (see `berth rotate-key`). A key file holds one
//! base64 key per line (blank lines and `#` comments ignored);
//! BERTH_SECRET_KEY separates them with commas or whitespace.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::Config;
use crate::secret::{Cipher, Keyring};

/// Loads (or, for a fresh SQLite database, creates) the keyring.
pub fn load(config: &Config) -> anyhow::Result<Keyring> {
    if let Some(text) = &config.secret_key {
        return Keyring::from_list(text).context("BERTH_SECRET_KEY");
    }
    if let Some(path) = &config.secret_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading BERTH_SECRET_KEY_FILE {}", path.display()))?;
        return Keyring::from_lines(&text)
            .with_context(|| format!("BERTH_SECRET_KEY_FILE {}", path.display()));
    }
    match sqlite_path(&config.database_url) {
        Some(SqliteTarget::Memory) => {
            tracing::warn!("in-memory database: using a throw-away secret key");
            Ok(Cipher::from_base64(&Cipher::generate_base64())?.into())
        }
        Some(SqliteTarget::File(db)) => key_beside(&db),
        None => bail!(
            "BERTH_SECRET_KEY or BERTH_SECRET_KEY_FILE is required with PostgreSQL or MySQL: \
             replicas sharing a database must share the key"
        ),
    }
}

fn key_beside(db: &Path) -> anyhow::Result<Keyring> {
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join("berth.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Keyring::from_lines(&text).with_context(|| format!("key file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Cipher::generate_base64();
            write_private(&path, key.as_bytes())
                .with_context(|| format!("creating key file {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "created a new secret key file; back it up with the database (secrets cannot be read without it)"
            );
            Ok(Cipher::from_base64(&key)?.into())
        }
        Err(e) => Err(e).with_context(|| format!("reading key file {}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// A SQLite database: a file or memory.
#[derive(Debug, PartialEq, Eq)]
pub enum SqliteTarget {
    /// `sqlite::memory:` or `mode=memory`.
    Memory,
    /// A database file.
    File(PathBuf),
}

/// The SQLite target of a database URL, or `None` for other databases.
pub fn sqlite_path(url: &str) -> Option<SqliteTarget> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory") {
        return Some(SqliteTarget::Memory);
    }
    Some(SqliteTarget::File(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            sqlite_path("sqlite://berth.db?mode=rwc"),
            Some(SqliteTarget::File("berth.db".into()))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/berth/b.db"),
            Some(SqliteTarget::File("/var/lib/berth/b.db".into()))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), Some(SqliteTarget::Memory));
        assert_eq!(sqlite_path("postgres://localhost/x"), None);
    }

    #[test]
    fn creates_a_private_key_file_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("b.db");
        let first = key_beside(&db).expect("created");
        let second = key_beside(&db).expect("read back");
        assert_eq!(first.active_key_id(), second.active_key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("berth.key"))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn config_with(key: Option<&str>, file: Option<PathBuf>) -> Config {
        use clap::Parser;
        let mut cfg = crate::config::Cli::parse_from(["berth"]).config;
        cfg.database_url = "postgres://localhost/x".into();
        cfg.secret_key = key.map(str::to_owned);
        cfg.secret_key_file = file;
        cfg
    }

    #[test]
    fn several_keys_from_each_source() {
        use base64::Engine as _;
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        let ring =
            load(&config_with(Some(&format!("{},{}", b64(2), b64(1))), None)).expect("env list");
        assert_eq!(ring.old_key_ids().count(), 1);

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("keys");
        std::fs::write(&file, format!("# active\n{}\n{}\n", b64(2), b64(1))).expect("write");
        let from_file = load(&config_with(None, Some(file.clone()))).expect("file");
        assert_eq!(from_file.active_key_id(), ring.active_key_id());

        // A malformed line: the error names the source and the line.
        std::fs::write(&file, format!("{}\n\nnot a key\n", b64(2))).expect("write");
        let err = format!(
            "{:#}",
            load(&config_with(None, Some(file.clone()))).expect_err("bad")
        );
        assert!(err.contains("BERTH_SECRET_KEY_FILE"), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let err = format!(
            "{:#}",
            load(&config_with(Some(&format!("{},x", b64(2))), None)).expect_err("bad")
        );
        assert!(err.starts_with("BERTH_SECRET_KEY: entry 2"), "{err}");

        // Beside a SQLite database: several keys are read too.
        std::fs::write(
            dir.path().join("berth.key"),
            format!("{}\n{}\n", b64(2), b64(1)),
        )
        .expect("write");
        let beside = key_beside(&dir.path().join("b.db")).expect("beside");
        assert_eq!(beside.old_key_ids().count(), 1);
    }
}
