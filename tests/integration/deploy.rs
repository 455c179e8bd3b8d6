//! The deployment files in `deploy/` agree with the service and with each
//! other, as far as this machine can tell without a container runtime or a
//! cluster:
//!
//! - the systemd unit carries its hardening and passes `systemd-analyze
//!   verify` (with warnings counted as failures) and `systemd-analyze
//!   security`, when `systemd-analyze` is installed;
//! - the Dockerfile builds the service without developer tools in one stage
//!   and runs it as a numeric non-root user in another;
//! - every Kubernetes manifest parses; the ConfigMap's configuration, with
//!   the Deployment's `REDIS_SPANNER__…` variables over it, is one the
//!   service accepts; probes, mounts and Secrets match its settings; and
//!   `kubectl kustomize` renders the folder, when `kubectl` is installed.
//!
//! No image is built and nothing is applied to a cluster here
//! (docs/DEPLOYING.md says what was and was not run).

use redis_spanner::config::{AdminConfig, Config, PluginsConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_owned()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A program on `PATH`, if installed.
fn program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The `[Service]` section of a unit: each key's values in order.
fn service_section(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = "";
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            let (key, value) = line.split_once('=').expect("key=value");
            keys.entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    keys
}

/// The default admin port, from the service's own default `admin.listen`.
fn default_admin_port() -> u16 {
    let listen = AdminConfig::default().listen.expect("a default address");
    port_of(&listen)
}

fn port_of(listen: &str) -> u16 {
    let (_, port) = listen.rsplit_once(':').expect("host:port");
    port.parse().expect("a port number")
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let unit = read("deploy/systemd/redis-spanner.service");
    let service = service_section(&unit);
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("{key}: expected one value, found {other:?}"),
        }
    };
    for (key, value) in [
        ("User", "redis-spanner"),
        ("Group", "redis-spanner"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
        ("CacheDirectory", "redis-spanner"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    let families: Vec<&str> = one("RestrictAddressFamilies").split(' ').collect();
    assert_eq!(families, ["AF_INET", "AF_INET6", "AF_UNIX"]);
    // Plugins are compiled to machine code at run time.
    assert!(!service.contains_key("MemoryDenyWriteExecute"));
    // The cache folder is the one writable path, made by CacheDirectory=.
    assert!(!service.contains_key("ReadWritePaths"));
    assert!(!service.contains_key("DynamicUser"));
    let stop: u64 = one("TimeoutStopSec")
        .strip_suffix('s')
        .expect("in seconds")
        .parse()
        .expect("a number");
    assert!(
        std::time::Duration::from_secs(stop) > PluginsConfig::default().shutdown_timeout(),
        "TimeoutStopSec={stop}s must outlast plugins.shutdown_timeout_ms"
    );
    let exec = one("ExecStart");
    assert_eq!(
        exec,
        "/usr/local/bin/redis-spanner run --config /etc/redis-spanner/redis-spanner.toml"
    );

    let Some(analyze) = program("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the unit's keys were checked, not verified");
        return;
    };
    // verify wants ExecStart's program to exist: this test's own binary
    // stands in for redis-spanner, which this crate cannot name.
    let temp = tempfile::tempdir().unwrap();
    let copy = temp.path().join("redis-spanner.service");
    let stand_in = std::env::current_exe().unwrap();
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/redis-spanner ",
            &format!("ExecStart={} ", stand_in.display()),
        ),
    )
    .unwrap();
    let verified = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&verified.stderr);
    // An unknown key or a bad value is only a warning on stderr; exit 0.
    assert!(
        verified.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        verified.status
    );
    let security = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    match report
        .lines()
        .find_map(|line| line.split("redis-spanner.service: ").nth(1))
    {
        Some(rest) => {
            let level: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .expect("an exposure level");
            // 0 is the most confined, 10 not confined at all.
            assert!(level <= 2.0, "exposure level {level}:\n{report}");
        }
        None => eprintln!(
            "systemd-analyze security --offline is not supported here: {}",
            String::from_utf8_lossy(&security.stderr).trim()
        ),
    }
}

#[test]
fn dockerfile_builds_the_service_without_developer_tools_as_non_root() {
    let dockerfile = read("deploy/docker/Dockerfile");
    // Instructions, with continuation lines joined.
    let joined = dockerfile
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instructions: Vec<(&str, &str)> = joined
        .lines()
        .filter_map(|line| line.trim().split_once(' '))
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = instructions.split_at(stages[1]);
    assert!(build[stages[0]].1.starts_with("rust:"), "{:?}", build[0]);
    assert!(build[stages[0]].1.ends_with(" AS build"), "{:?}", build[0]);
    let cargo = build
        .iter()
        .find(|(op, args)| *op == "RUN" && args.contains("cargo build"))
        .expect("the build stage runs cargo build")
        .1;
    for flag in [
        "--release",
        "--locked",
        "-p redis-spanner",
        "--no-default-features",
    ] {
        assert!(cargo.contains(flag), "cargo build without {flag}: {cargo}");
    }
    // --no-default-features leaves out exactly the developer tools.
    let manifest = read("host/Cargo.toml");
    assert!(
        manifest.contains("default = [\"devtools\"]"),
        "host/Cargo.toml's default features changed; check the Dockerfile's build"
    );

    assert!(!runtime[0].1.contains("rust:"), "{:?}", runtime[0]);
    let users: Vec<&str> = runtime
        .iter()
        .filter(|(op, _)| *op == "USER")
        .map(|(_, args)| *args)
        .collect();
    let user = users.last().expect("the runtime stage sets a USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    for id in [uid, gid] {
        let id: u32 = id
            .parse()
            .expect("a numeric id, so runAsNonRoot can check it");
        assert_ne!(id, 0, "USER {user}");
    }
    let expose = runtime
        .iter()
        .find(|(op, _)| *op == "EXPOSE")
        .expect("EXPOSE of the admin port")
        .1;
    assert_eq!(expose, default_admin_port().to_string());
    let exec = |op: &str| {
        runtime
            .iter()
            .find(|(o, _)| *o == op)
            .unwrap_or_else(|| panic!("no {op}"))
            .1
    };
    assert_eq!(exec("ENTRYPOINT"), r#"["/usr/local/bin/redis-spanner"]"#);
    assert_eq!(
        exec("CMD"),
        r#"["run", "--config", "/etc/redis-spanner/redis-spanner.toml"]"#
    );
    let ignored: Vec<&str> = include_str!("../../.dockerignore")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    for path in [".git", "target", "**/target"] {
        assert!(ignored.contains(&path), ".dockerignore lacks {path}");
    }
}

/// Every document of every manifest in deploy/kubernetes, by file.
fn manifests() -> BTreeMap<String, Vec<Yaml>> {
    let dir = root().join("deploy/kubernetes");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = YamlLoader::load_from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, docs);
        }
    }
    files
}

fn text(yaml: &Yaml) -> &str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("not a string: {yaml:?}"))
}

fn list(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec()
        .unwrap_or_else(|| panic!("not a list: {yaml:?}"))
}

/// The one item of `items` whose `name` is `name`.
fn named<'a>(items: &'a Yaml, name: &str) -> &'a Yaml {
    list(items)
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no item named {name} in {items:?}"))
}

#[test]
fn kubernetes_manifests_agree_with_the_service() {
    let files = manifests();
    let mut objects: BTreeMap<(String, String), &Yaml> = BTreeMap::new();
    for (file, docs) in &files {
        for doc in docs {
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{file}: no apiVersion"
            );
            let kind = text(&doc["kind"]).to_owned();
            if kind == "Kustomization" {
                continue;
            }
            let name = text(&doc["metadata"]["name"]).to_owned();
            objects.insert((kind, name), doc);
        }
    }
    let object = |kind: &str, name: &str| -> &Yaml {
        objects
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };

    // kustomization.yaml lists every manifest but the Secrets' example.
    let kustomization = &files["kustomization.yaml"][0];
    let resources: Vec<&str> = list(&kustomization["resources"]).iter().map(text).collect();
    let expected: Vec<&str> = files
        .keys()
        .map(String::as_str)
        .filter(|f| !["kustomization.yaml", "secret.example.yaml"].contains(f))
        .collect();
    let mut sorted = resources.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);

    let deployment = object("Deployment", "redis-spanner");
    let spec = &deployment["spec"];
    // Replicas share the stream; a rollout adds a pod before it stops one.
    assert!(spec["replicas"].as_i64().is_some_and(|n| n >= 2));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(0)
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        spec["selector"]["matchLabels"],
        spec["template"]["metadata"]["labels"]
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert!(
        pod["securityContext"]["runAsUser"]
            .as_i64()
            .is_some_and(|uid| uid > 0)
    );
    let account = text(&pod["serviceAccountName"]);
    object("ServiceAccount", account);
    let container = named(&pod["containers"], "redis-spanner");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(
        list(&security["capabilities"]["drop"]),
        [Yaml::String("ALL".into())]
    );
    assert!(!container["resources"]["requests"].is_badvalue());

    // The configuration: the ConfigMap's file with the Deployment's
    // REDIS_SPANNER__ variables over it, read by the service's own reader.
    let args: Vec<&str> = list(&container["args"]).iter().map(text).collect();
    assert_eq!(args[0], "run");
    let config_path = args[args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config")
        + 1];
    let mounts = &container["volumeMounts"];
    let mount_of = |path: &Path| -> (&str, &Yaml) {
        let mount = list(mounts)
            .iter()
            .filter(|m| path.starts_with(text(&m["mountPath"])))
            .max_by_key(|m| text(&m["mountPath"]).len())
            .unwrap_or_else(|| panic!("nothing is mounted at {}", path.display()));
        let volume = named(&pod["volumes"], text(&mount["name"]));
        (text(&mount["mountPath"]), volume)
    };
    let (config_mount, config_volume) = mount_of(Path::new(config_path));
    assert_eq!(config_mount, config_path);
    let config_map = object("ConfigMap", text(&config_volume["configMap"]["name"]));
    let file_name = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let mount = list(mounts)
        .iter()
        .find(|m| text(&m["mountPath"]) == config_path)
        .unwrap();
    assert_eq!(text(&mount["subPath"]), file_name);
    let toml = text(&config_map["data"][file_name]);
    let env: Vec<(&str, &str)> = list(&container["env"])
        .iter()
        .map(|var| (text(&var["name"]), text(&var["value"])))
        .collect();
    assert!(
        env.iter()
            .any(|(name, _)| name.starts_with("REDIS_SPANNER__")),
        "the Deployment shows a setting from the environment"
    );
    let config = Config::parse_with_env(toml, Path::new("configmap.yaml"), env.clone())
        .unwrap_or_else(|e| panic!("{e}"));

    // Probes: /readyz and /healthz on the admin port, which listens on all
    // interfaces (the kubelet probes the pod's address).
    let listen = config.admin.listen.as_deref().expect("admin.listen is set");
    assert!(listen.starts_with("0.0.0.0:"), "admin.listen = {listen}");
    let port = named(&container["ports"], "admin");
    assert_eq!(
        port["containerPort"].as_i64(),
        Some(i64::from(port_of(listen)))
    );
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("admin"), "{probe}");
    }
    let admin = object("Service", "redis-spanner-admin");
    assert_eq!(
        admin["spec"]["selector"],
        spec["template"]["metadata"]["labels"]
    );
    assert_eq!(
        admin["spec"]["ports"][0]["targetPort"].as_str(),
        Some("admin")
    );
    // /status and /metrics stay reachable while /readyz fails.
    assert_eq!(
        admin["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );

    // The shutdown fits in the grace period.
    let grace = pod["terminationGracePeriodSeconds"].as_i64().expect("set");
    assert!(
        std::time::Duration::from_secs(grace as u64) > config.plugins.shutdown_timeout(),
        "terminationGracePeriodSeconds {grace}"
    );

    // The Redis password file is a key of a mounted Secret (a folder, not
    // a subPath, so a rotated password reaches the file).
    let examples = &files["secret.example.yaml"];
    let example = |name: &str| -> &Yaml {
        examples
            .iter()
            .find(|doc| doc["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("secret.example.yaml has no Secret {name}"))
    };
    let password = config
        .redis
        .password_file
        .as_deref()
        .expect("password_file");
    let (dir, volume) = mount_of(password);
    assert_eq!(Path::new(dir), password.parent().unwrap());
    let secret = example(text(&volume["secret"]["secretName"]));
    let key = password.file_name().unwrap().to_str().unwrap();
    assert!(secret["stringData"][key].as_str().is_some(), "{key}");

    // The keyring folder is a mounted Secret of <name>.v<n>.key files.
    let keys = config
        .keyring
        .as_ref()
        .and_then(|k| k.dir.as_deref())
        .expect("keyring.dir");
    let (dir, volume) = mount_of(keys);
    assert_eq!(Path::new(dir), keys);
    let secret = example(text(&volume["secret"]["secretName"]));
    let files_in_secret = secret["stringData"].as_hash().expect("stringData");
    assert!(!files_in_secret.is_empty());
    for file in files_in_secret.keys().map(text) {
        let (name, version) = file
            .strip_suffix(".key")
            .and_then(|stem| stem.rsplit_once(".v"))
            .unwrap_or_else(|| panic!("{file} is not <name>.v<n>.key"));
        assert!(!name.is_empty() && version.parse::<u32>().is_ok(), "{file}");
    }

    // Plugins from a read-only mount; their compiled code in an emptyDir,
    // the one writable folder under the read-only root.
    let (dir, volume) = mount_of(&config.plugins.dir);
    assert_eq!(Path::new(dir), config.plugins.dir);
    assert!(!volume["configMap"].is_badvalue(), "{volume:?}");
    let cache = config.plugins.cache_dir();
    let (dir, volume) = mount_of(&cache);
    assert_eq!(Path::new(dir), cache);
    assert!(!volume["emptyDir"].is_badvalue(), "{volume:?}");
    for mount in list(mounts) {
        let writable = mount["readOnly"].as_bool() != Some(true);
        assert_eq!(
            writable,
            Path::new(text(&mount["mountPath"])) == cache,
            "{mount:?}"
        );
    }

    // kubectl renders the folder offline (applying needs a cluster).
    match program("kubectl") {
        Some(kubectl) => {
            let rendered = Command::new(kubectl)
                .arg("kustomize")
                .arg(root().join("deploy/kubernetes"))
                .output()
                .expect("run kubectl kustomize");
            assert!(
                rendered.status.success(),
                "kubectl kustomize: {}",
                String::from_utf8_lossy(&rendered.stderr)
            );
            let docs = YamlLoader::load_from_str(&String::from_utf8_lossy(&rendered.stdout))
                .expect("kustomize's output parses");
            assert_eq!(docs.len(), resources.len());
        }
        None => eprintln!("kubectl is not installed: kustomization.yaml was not rendered"),
    }
}
