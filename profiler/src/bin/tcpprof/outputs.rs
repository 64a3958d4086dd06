//! Output files are checked before a run, not after: a run of minutes should not end by failing
//! to write the file it was for.
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Refuses `path`, given with `flag`, when it cannot be written: its directory missing or not
/// writable, or the path itself a directory. Leaves nothing behind.
pub fn check_writable(flag: &str, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let shown = path.display();
    if path.is_dir() {
        bail!("{flag} {shown}: is a directory");
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("{flag} {shown}: {} is not a directory", dir.display()),
        Err(e) => bail!("{flag} {shown}: {}: {e}", dir.display()),
    }
    if let Err(e) = can_write_in(dir) {
        bail!("{flag} {shown}: cannot write in {}: {e}", dir.display());
    }
    Ok(())
}

/// Writes `contents` to `path` and says so on stderr as `what: path`.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, what: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("{what}: {}", path.display());
    Ok(())
}

/// access(2) for writing, which also answers for a read-only file system.
fn can_write_in(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; access reads it and nothing else.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_outputs_are_named() {
        let err = |p: &str| check_writable("--hgrm", Path::new(p)).unwrap_err().to_string();
        assert!(err("/nonexistent/dir/x.hgrm").starts_with("--hgrm /nonexistent/dir/x.hgrm: /nonexistent/dir: "));
        assert_eq!(err("/tmp"), "--hgrm /tmp: is a directory");
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert!(err(&format!("{manifest}/x")).ends_with(&format!("{manifest} is not a directory")));
        check_writable("--hgrm", Path::new("x.hgrm")).unwrap();
        check_writable("--hgrm", Path::new("/tmp/x.hgrm")).unwrap();
    }
}
