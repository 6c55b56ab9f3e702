//! Files the broker keeps that nobody else on the machine may read: the SQLite database (its
//! `-wal` and `-shm` files, which SQLite creates with the database file's mode), the generated
//! JWT secret, uploaded files and their thumbnails. Files are created `0600` and the
//! directories the broker creates for them `0700`. The mode is given when the file or directory
//! is made and set again explicitly, so that it does not depend on the process's umask; files
//! and directories that already exist are left as the operator made them.

use std::io;
use std::path::Path;

/// Owner only: read and write.
pub const FILE_MODE: u32 = 0o600;
/// Owner only: read, write, enter.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parent, each new one `0700`.
///
/// # Errors
///
/// The system's error when a directory cannot be made.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir(parent)?;
    }
    match make_dir(dir) {
        Ok(()) => set_mode(dir, DIR_MODE),
        // Made by someone else meanwhile: theirs to keep.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(error) => Err(error),
    }
}

/// Creates `path` empty and `0600` when it does not exist yet; an existing file is left alone.
///
/// # Errors
///
/// The system's error when the file cannot be made.
pub fn create_file(path: &Path) -> io::Result<()> {
    match options().open(path) {
        Ok(file) => set_file_mode(&file),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Writes `bytes` to a new file `path` (which must not exist), `0600`.
///
/// # Errors
///
/// The system's error, also when `path` exists.
pub async fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::from(options()).open(path).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .await?;
    }
    file.write_all(bytes).await?;
    file.flush().await
}

/// Options that create a new file, write only, `0600`.
pub fn options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

#[cfg(unix)]
fn make_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(DIR_MODE).create(dir)
}

#[cfg(not(unix))]
fn make_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir(dir)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn set_file_mode(file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
}

#[cfg(not(unix))]
fn set_file_mode(_file: &std::fs::File) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_owner_only_whatever_exists_stays() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let nested = root.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(
            mode(root.path()),
            0o755,
            "an existing directory is left alone"
        );
        let file = nested.join("f");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, b"kept").unwrap();
        create_file(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"kept");
    }
}
