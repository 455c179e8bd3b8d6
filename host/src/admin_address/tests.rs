use super::*;

#[test]
fn an_address_written_is_read_back_and_removed_only_by_its_writer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("admin.address");
    let ours: SocketAddr = "127.0.0.1:40123".parse()?;
    let theirs: SocketAddr = "127.0.0.1:40124".parse()?;
    write(&file, ours)?;
    assert_eq!(read(&file)?, ours);
    // Another process wrote its own address since: ours is not removed.
    write(&file, theirs)?;
    remove_if_ours(&file, ours);
    assert_eq!(read(&file)?, theirs);
    remove_if_ours(&file, theirs);
    assert!(!file.exists());
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
    Ok(())
}

#[test]
fn an_earlier_runs_file_is_removed_and_a_missing_folder_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("admin.address");
    std::fs::write(&file, "127.0.0.1:1\n")?;
    prepare(&file)?;
    assert!(!file.exists());
    let nowhere = dir.path().join("missing").join("admin.address");
    let error = prepare(&nowhere).unwrap_err().to_string();
    assert!(error.contains("does not exist"), "{error}");
    assert!(write(&nowhere, "127.0.0.1:2".parse()?).is_err());
    Ok(())
}

#[test]
fn content_that_is_no_address_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("admin.address");
    std::fs::write(&file, "not an address\n")?;
    let error = read(&file).unwrap_err().to_string();
    assert!(error.contains("\"not an address\""), "{error}");
    let missing = read(&dir.path().join("none")).unwrap_err().to_string();
    assert!(missing.contains("is the service running"), "{missing}");
    Ok(())
}
