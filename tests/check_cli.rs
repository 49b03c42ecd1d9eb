//! `tidegate check --config FILE`: a summary and exit 0 for a valid file;
//! every error with its key path and exit 1 for an invalid one, like `nginx -t`.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap()
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("tidegate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn a_valid_file_prints_a_summary_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        r#"
        [proxy]
        listen = ["127.0.0.1:18080", "127.0.0.1:18081"]
        [admin]
        listen = "127.0.0.1:19901"
        [store]
        database_url = "postgres://tidegate:secret@db.internal/tidegate"
        [services.api]
        routes = [{ path_prefix = "/api" }, { host = "api.example.test", path_prefix = "/" }]
        instances = [{ address = "127.0.0.1:9001", weight = 2 }, { address = "127.0.0.1:9002" }]
        [services.api.load_balancer]
        algorithm = "least_connections"
        [services.web]
        routes = [{ path_prefix = "/" }]
        instances = [{ address = "127.0.0.1:9003" }]
        "#,
    );

    let output = check(&path);

    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    let expected = format!(
        "{}: configuration is valid\n\
         \x20 proxy    127.0.0.1:18080, 127.0.0.1:18081\n\
         \x20 admin    127.0.0.1:19901\n\
         \x20 store    postgres://tidegate:***@db.internal/tidegate\n\
         \x20 service  api: routes */api api.example.test/; 2 instance(s); least_connections; static orchestrator; no scaling\n\
         \x20 service  web: routes */; 1 instance(s); round_robin; static orchestrator; no scaling\n",
        path.display()
    );
    assert_eq!(
        text(&output.stdout),
        expected,
        "one line per listener and service, the password hidden"
    );
}

#[test]
fn an_invalid_file_lists_every_error_with_its_key_path_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        r#"
        [proxy]
        listen = ["127.0.0.1:8080", "localhost"]
        shutdown_grace = "soon"
        [admin]
        listen = "127.0.0.1:8080"
        [timeouts]
        connect = "0s"
        [limits]
        max_header_bytes = 1024
        [services.api]
        routes = [{ path_prefix = "api" }]
        instances = [{ address = "127.0.0.1:8081" }, { address = "127.0.0.1:99999" }]
        [services.api.load_balancer]
        algorithm = "fastest"
        max_retries = 11
        [services.web]
        routes = []
        instances = [{ address = "127.0.0.1:8082", weight = 20000 }]
        "#,
    );

    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let expected = [
        r#"proxy.listen[1]: "localhost" is not a socket address"#,
        r#"proxy.shutdown_grace: "soon" is not a duration (write e.g. "250ms", "5s", "2m")"#,
        r#"admin.listen: 127.0.0.1:8080 is also a proxy listener"#,
        r#"timeouts.connect: "0s" must be longer than zero"#,
        r#"limits.max_header_bytes: 1024 must be at least 8192"#,
        r#"services.api.routes[0].path_prefix: "api" must start with /"#,
        r#"services.api.instances[1].address: "127.0.0.1:99999" is not a socket address"#,
        r#"services.api.load_balancer.algorithm: "fastest" is not one of round_robin, weighted, least_connections, ip_hash, random, peak_ewma, adaptive"#,
        r#"services.api.load_balancer.max_retries: 11 must be at most 10"#,
        r#"services.web.routes: a service needs at least one route"#,
        r#"services.web.instances[0].weight: 20000 must be at most 10000"#,
    ];
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[..lines.len() - 1],
        expected,
        "every error is listed, each with its key path and value"
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("{}: configuration is invalid", path.display()).as_str())
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout for an invalid file"
    );
}

#[test]
fn an_unknown_key_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[proxy]\nlisten = [\"127.0.0.1:8080\"]\nlisen = 1\n");

    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unknown field `lisen`"),
        "a misspelt key is refused, not ignored: {stderr}"
    );
    assert!(
        stderr.contains("line 3"),
        "the error points at the line: {stderr}"
    );
}

#[test]
fn the_shipped_default_and_container_configs_are_valid() {
    let expected = [
        (
            "config/tidegate.toml",
            "service  demo: routes */; 0 instance(s); round_robin; process orchestrator; 1..4 instances",
        ),
        (
            "docker/tidegate.toml",
            "service  demo: routes */; 2 instance(s); round_robin; static orchestrator; no scaling",
        ),
    ];
    for (file, summary) in expected {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);

        let output = check(&path);

        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {}",
            text(&output.stderr)
        );
        let stdout = text(&output.stdout);
        assert!(stdout.contains(summary), "{file}: {stdout}");
    }
}

#[test]
fn a_missing_file_is_reported_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();

    let output = check(&dir.path().join("absent.toml"));

    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).starts_with("cannot read "));
}
