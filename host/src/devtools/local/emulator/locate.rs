//! Finding the emulator's programs: environment variables, the Debian package's
//! folder, or the Cloud SDK that `gcloud` names.

use super::*;

/// Paths of the two emulator programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binaries {
    /// `gateway_main`: REST server and supervisor.
    pub(super) gateway_main: PathBuf,
    /// `emulator_main`: the gRPC server.
    pub(super) emulator_main: PathBuf,
}

/// Finds the emulator programs; `env` reads environment variables (a
/// parameter so that tests need not change the process environment).
pub(super) async fn locate(env: impl Fn(&str) -> Option<OsString>) -> Result<Binaries, LocalError> {
    locate_with(env, Path::new(DEFAULT_DIR)).await
}

/// [`locate`] with the package folder as a parameter, for tests.
pub(super) async fn locate_with(
    env: impl Fn(&str) -> Option<OsString>,
    default_dir: &Path,
) -> Result<Binaries, LocalError> {
    let named = |var: &str| -> Result<Option<PathBuf>, LocalError> {
        match env(var) {
            None => Ok(None),
            Some(path) => {
                let path = PathBuf::from(path);
                if crate::devtools::local::is_executable(&path) {
                    Ok(Some(path))
                } else {
                    Err(LocalError::EmulatorNotFound {
                        searched: format!("{} (from {var})", path.display()),
                    })
                }
            }
        }
    };
    let gateway_named = named(GATEWAY_MAIN_ENV)?;
    let emulator_named = named(EMULATOR_MAIN_ENV)?;
    if let (Some(gateway_main), Some(emulator_main)) = (&gateway_named, &emulator_named) {
        return Ok(Binaries {
            gateway_main: gateway_main.clone(),
            emulator_main: emulator_main.clone(),
        });
    }

    let mut searched = Vec::new();
    let pick = |dir: &Path| -> Option<Binaries> {
        let gateway_main = gateway_named
            .clone()
            .unwrap_or_else(|| dir.join("gateway_main"));
        let emulator_main = emulator_named
            .clone()
            .unwrap_or_else(|| dir.join("emulator_main"));
        (crate::devtools::local::is_executable(&gateway_main)
            && crate::devtools::local::is_executable(&emulator_main))
        .then_some(Binaries {
            gateway_main,
            emulator_main,
        })
    };

    if let Some(dir) = env(EMULATOR_DIR_ENV) {
        let dir = PathBuf::from(dir);
        return pick(&dir).ok_or_else(|| LocalError::EmulatorNotFound {
            searched: format!("{} (from {EMULATOR_DIR_ENV})", dir.display()),
        });
    }

    let mut dirs = vec![default_dir.to_owned()];
    if let Some(home) = env("HOME") {
        dirs.push(Path::new(&home).join("google-cloud-sdk").join(SDK_SUBDIR));
    }
    for dir in &dirs {
        if let Some(found) = pick(dir) {
            return Ok(found);
        }
        searched.push(dir.display().to_string());
    }

    let path_var = env("PATH");
    match crate::devtools::local::search_path("gcloud", path_var.as_deref()) {
        (Some(gcloud), _) => match sdk_root(&gcloud).await {
            Ok(root) => {
                let dir = root.join(SDK_SUBDIR);
                if let Some(found) = pick(&dir) {
                    return Ok(found);
                }
                searched.push(format!("{} (from gcloud info)", dir.display()));
            }
            Err(reason) => searched.push(format!("the gcloud SDK root ({reason})")),
        },
        (None, _) => searched.push("the gcloud SDK root (gcloud is not on PATH)".to_owned()),
    }
    Err(LocalError::EmulatorNotFound {
        searched: searched.join(", "),
    })
}

/// Asks `gcloud info` for the Cloud SDK root folder.
pub(super) async fn sdk_root(gcloud: &Path) -> Result<PathBuf, String> {
    let output = tokio::process::Command::new(gcloud)
        .args(["info", "--format=value(installation.sdk_root)"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(GCLOUD_TIMEOUT, output).await {
        Err(_) => Err(format!(
            "`{} info` took over {GCLOUD_TIMEOUT:?}",
            gcloud.display()
        )),
        Ok(Err(error)) => Err(format!("could not run {}: {error}", gcloud.display())),
        Ok(Ok(output)) if !output.status.success() => Err(format!(
            "`{} info` failed ({})",
            gcloud.display(),
            output.status
        )),
        Ok(Ok(output)) => {
            let root = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if root.is_empty() {
                Err(format!("`{} info` printed no SDK root", gcloud.display()))
            } else {
                Ok(PathBuf::from(root))
            }
        }
    }
}
