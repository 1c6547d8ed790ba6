//! Where the secret key comes from: the environment, a file, or (SQLite
//! only) a key file created beside the database on first start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::Config;
use crate::secret::Cipher;

/// Loads (or, for a fresh SQLite database, creates) the cipher.
pub fn load(config: &Config) -> anyhow::Result<Cipher> {
    if let Some(text) = &config.secret_key {
        return Cipher::from_base64(text).context("BERTH_SECRET_KEY");
    }
    if let Some(path) = &config.secret_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading BERTH_SECRET_KEY_FILE {}", path.display()))?;
        return Cipher::from_base64(&text)
            .with_context(|| format!("BERTH_SECRET_KEY_FILE {}", path.display()));
    }
    match sqlite_path(&config.database_url) {
        Some(SqliteTarget::Memory) => {
            tracing::warn!("in-memory database: using a throw-away secret key");
            Ok(Cipher::from_base64(&Cipher::generate_base64())?)
        }
        Some(SqliteTarget::File(db)) => key_beside(&db),
        None => bail!(
            "BERTH_SECRET_KEY or BERTH_SECRET_KEY_FILE is required with PostgreSQL or MySQL: \
             replicas sharing a database must share the key"
        ),
    }
}

fn key_beside(db: &Path) -> anyhow::Result<Cipher> {
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join("berth.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Cipher::from_base64(&text).with_context(|| format!("key file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Cipher::generate_base64();
            write_private(&path, key.as_bytes())
                .with_context(|| format!("creating key file {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "created a new secret key file; back it up with the database (secrets cannot be read without it)"
            );
            Ok(Cipher::from_base64(&key)?)
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
        assert_eq!(first.key_id(), second.key_id());
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
}
