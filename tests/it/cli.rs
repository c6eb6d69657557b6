//! The command line (docs/operations.md "Commands"): `check-config` diagnostics, `serve` refusing bad configs, `token`.
//!
//! These run the binary to completion and look at its exit code, stdout and
//! stderr, the way an operator or a deploy script would.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::jwt::{self, SECRET};
use crate::support::*;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tempfile::TempDir;

/// A config for an upstream that need not exist (nothing here proxies).
fn config() -> Config {
    Config::new("http://127.0.0.1:8000")
}

/// Writes `cfg` into a fresh temp dir; returns the dir (keep it alive) and the path.
fn write(cfg: &Config) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = cfg.write_to(dir.path());
    (dir, path)
}

/// Runs `paygate` with `args` (and `cfg`'s environment) to completion.
fn run(cfg: &Config, args: &[&str]) -> Output {
    let mut cmd = paygate();
    cmd.args(args);
    for (k, v) in cfg.envs() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn paygate");
    // `serve` on a bad config must exit by itself; do not hang if it starts.
    let deadline = std::time::Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "paygate {args:?} did not exit; stdout: {}; stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Polling interval for the child's exit, not a synchronization.
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn check_config(cfg: &Config) -> Output {
    let (_dir, path) = write(cfg);
    run(cfg, &["check-config", "--config", path.to_str().unwrap()])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit code 1 and a stderr line naming each of `keys`, one line per
/// problem (so no two keys share a line).
#[track_caller]
fn assert_problems(out: &Output, keys: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stderr:\n{err}"
    );
    let mut lines_used = Vec::new();
    for key in keys {
        let line = err
            .lines()
            .position(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no stderr line names {key:?}; stderr:\n{err}"));
        lines_used.push(line);
    }
    lines_used.sort();
    lines_used.dedup();
    assert_eq!(
        lines_used.len(),
        keys.len(),
        "each problem gets its own line; stderr:\n{err}"
    );
}

#[test]
fn check_config_accepts_a_valid_config_and_summarizes_it() {
    let out = check_config(&config());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    for prefix in [
        "/health",
        "/api/subscriptions",
        "/api/banking",
        "/api/reports/export",
    ] {
        assert!(
            text.contains(prefix),
            "summary does not list route {prefix}:\n{text}"
        );
    }
    assert!(
        text.contains("127.0.0.1:8000"),
        "summary does not name the upstream:\n{text}"
    );
}

#[test]
fn check_config_names_an_unknown_key_and_the_key_it_is_close_to() {
    let out = check_config(&config().set_str("server.listne", "127.0.0.1:1"));
    assert_problems(&out, &["server.listne"]);
    assert!(
        stderr(&out).contains("server.listne: unknown key; did you mean `listen`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_names_an_unknown_section() {
    let out = check_config(&config().set_str("servr.listen", "127.0.0.1:1"));
    assert_problems(&out, &["servr"]);
    assert!(
        stderr(&out).contains("did you mean `server`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_gives_the_line_and_column_of_a_toml_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paygate.toml");
    // Line 4 opens a string it never closes; the secret on it must not be echoed.
    std::fs::write(
        &path,
        "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\nsecret = \"hunter2-0123456789abcdef\n",
    )
    .unwrap();
    let out = run(
        &config(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not valid TOML at line 4, column "), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the offending line is not echoed: {err}"
    );
}

#[test]
fn check_config_names_a_bad_algorithm() {
    let out = check_config(&config().set("jwt.algorithms", r#"["HS257"]"#));
    assert_problems(&out, &["jwt.algorithms"]);
}

#[test]
fn check_config_names_a_bad_duration() {
    let out = check_config(&config().set_str("upstream.timeout", "soon"));
    assert_problems(&out, &["upstream.timeout"]);
}

#[test]
fn check_config_names_a_bad_route_policy() {
    let out = check_config(&config().route("/paid", "paid-only"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("routes") && l.contains("policy")),
        "the problem line names the routes policy key; stderr:\n{err}"
    );
}

#[test]
fn check_config_reports_every_problem_together() {
    let cfg = config()
        .set_str("server.listne", "127.0.0.1:1")
        .set("jwt.algorithms", r#"["HS257"]"#)
        .set_str("upstream.timeout", "soon");
    assert_problems(
        &check_config(&cfg),
        &["server.listne", "jwt.algorithms", "upstream.timeout"],
    );
}

#[test]
fn check_config_names_an_unset_secret_variable() {
    let cfg = config()
        .unset("jwt.secret")
        .set_str("jwt.secret_env", "PAYGATE_E2E_SURELY_UNSET_SECRET");
    let out = check_config(&cfg);
    assert_problems(&out, &["PAYGATE_E2E_SURELY_UNSET_SECRET"]);
}

#[test]
fn check_config_accepts_a_secret_from_the_environment() {
    let cfg = config()
        .unset("jwt.secret")
        .set_str("jwt.secret_env", "PAYGATE_E2E_SECRET_SET")
        .env("PAYGATE_E2E_SECRET_SET", SECRET);
    let out = check_config(&cfg);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
}

#[test]
fn serve_refuses_an_invalid_config_naming_the_key() {
    let cfg = config().set_str("server.listne", "127.0.0.1:1");
    let (_dir, path) = write(&cfg);
    let out = run(&cfg, &["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success(), "serve started on an invalid config");
    assert!(
        !stdout(&out).contains("listening"),
        "stdout: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("server.listne"),
        "stderr:\n{}",
        stderr(&out)
    );
}

#[test]
fn serve_refuses_to_start_when_a_secret_variable_is_unset() {
    let cfg = config()
        .unset("jwt.secret")
        .set_str("jwt.secret_env", "PAYGATE_E2E_SURELY_UNSET_SECRET");
    let (_dir, path) = write(&cfg);
    let out = run(&cfg, &["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success(), "serve started without its secret");
    assert!(
        stderr(&out).contains("PAYGATE_E2E_SURELY_UNSET_SECRET"),
        "stderr:\n{}",
        stderr(&out)
    );
}

#[test]
fn config_flag_is_accepted_anywhere_and_beats_the_environment() {
    let good = config();
    let (_good_dir, good_path) = write(&good);
    let bad = config().set_str("server.listne", "x");
    let (_bad_dir, bad_path) = write(&bad);
    let good_path = good_path.to_str().unwrap();

    let out = run(&good, &["--config", good_path, "check-config"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "--config before the subcommand; stderr:\n{}",
        stderr(&out)
    );

    let bad_env = good
        .clone()
        .env("PAYGATE_CONFIG", bad_path.to_str().unwrap());
    let out = run(&bad_env, &["check-config", "--config", good_path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "--config must beat $PAYGATE_CONFIG; stderr:\n{}",
        stderr(&out)
    );
    let out = run(&bad_env, &["check-config"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "$PAYGATE_CONFIG is read without --config"
    );
}

/// Runs `paygate token` and returns the token it printed (the whole stdout).
fn mint(cfg: &Config, dir: &Path, extra: &[&str]) -> String {
    let path = cfg.write_to(dir);
    let mut args = vec!["token", "--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(cfg, &args);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let text = stdout(&out);
    let token = text.trim_end_matches('\n');
    assert!(
        !token.contains(char::is_whitespace),
        "stdout must be only the token, got {text:?}"
    );
    assert_eq!(token.split('.').count(), 3, "not a compact JWT: {token:?}");
    token.to_string()
}

fn verify(token: &str) -> Value {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    decode::<Value>(token, &DecodingKey::from_secret(SECRET.as_bytes()), &v)
        .unwrap_or_else(|e| panic!("token does not verify with the configured secret: {e}"))
        .claims
}

#[test]
fn token_prints_only_a_token_signed_with_the_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let claims = verify(&mint(&config(), dir.path(), &["--user", "alice"]));
    assert_eq!(claims["sub"], "alice");
    assert!(claims["exp"].as_i64().unwrap() > jwt::now(), "{claims}");
}

#[test]
fn token_ttl_sets_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let before = jwt::now();
    let claims = verify(&mint(
        &config(),
        dir.path(),
        &["--user", "bob", "--ttl", "2h"],
    ));
    let after = jwt::now();
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        exp >= before + 7200 && exp <= after + 7200,
        "exp {exp} is not two hours after minting ({before}..{after})"
    );
}

#[test]
fn token_uses_the_configured_user_claim() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config().set_str("jwt.user_claim", "user_id");
    let claims = verify(&mint(&cfg, dir.path(), &["--user", "42"]));
    assert!(
        claims["user_id"] == "42" || claims["user_id"] == 42,
        "the user id goes in the configured claim: {claims}"
    );
}

#[test]
fn token_refuses_when_only_public_keys_are_configured() {
    let cfg = config()
        .unset("jwt.secret")
        .set("jwt.algorithms", r#"["RS256"]"#)
        .set_str("jwt.public_key_file", "jwt.pem")
        .file("jwt.pem", jwt::RSA_PUBLIC_PEM);
    let (_dir, path) = write(&cfg);
    let out = run(
        &cfg,
        &[
            "token",
            "--config",
            path.to_str().unwrap(),
            "--user",
            "alice",
        ],
    );
    assert!(
        !out.status.success(),
        "token minted without an HS secret: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).trim().is_empty(),
        "no token on stdout: {}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_token_is_accepted_by_the_gateway() {
    let up = Upstream::start().await;
    let cfg = Config::new(&up.url())
        .set_str("jwt.issuer", "https://auth.example.com/")
        .set_str("jwt.audience", "api");
    let dir = tempfile::tempdir().unwrap();
    let token = mint(&cfg, dir.path(), &["--user", "alice", "--ttl", "1h"]);
    let gw = Gateway::start(&cfg).await;
    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token)).await;
    assert_eq!(got.header_all("x-user-id"), ["alice"]);
}

/// `paygate token … | head -c0`: the reader is gone before the token is
/// written. The pipe's read end is closed before the process starts, so the
/// write fails with EPIPE every time (no race with a real `head`).
#[test]
fn writing_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let path = cfg.write_to(dir.path());
    for args in [vec!["token", "--user", "alice"], vec!["check-config"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut cmd = paygate();
        cmd.args(&args).args(["--config", path.to_str().unwrap()]);
        for (k, v) in cfg.envs() {
            cmd.env(k, v);
        }
        let out = cmd
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run paygate");
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("backtrace"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

// --- secrets per command ---

/// A config whose JWT and webhook secrets come from variables that are unset.
fn config_without_secrets() -> Config {
    config()
        .unset("jwt.secret")
        .set_str("jwt.secret_env", "PAYGATE_E2E_SURELY_UNSET_SECRET")
        .set_str(
            "stripe.webhook_secret_env",
            "PAYGATE_E2E_SURELY_UNSET_WHSEC",
        )
}

#[test]
fn commands_ask_only_for_the_secrets_they_use() {
    let cfg = config_without_secrets();
    let (_dir, path) = write(&cfg);
    let path = path.to_str().unwrap();

    // `user show` reads the store: no secret at all.
    let show = run(&cfg, &["user", "show", "alice", "--config", path]);
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    assert!(stdout(&show).contains("user: alice"), "{}", stdout(&show));

    // `token` signs with the JWT secret: that one, and only that one, is named.
    let token = run(&cfg, &["token", "--user", "alice", "--config", path]);
    assert_eq!(token.status.code(), Some(1), "{}", stderr(&token));
    assert!(
        stderr(&token).contains("PAYGATE_E2E_SURELY_UNSET_SECRET"),
        "{}",
        stderr(&token)
    );
    assert!(
        !stderr(&token).contains("PAYGATE_E2E_SURELY_UNSET_WHSEC"),
        "{}",
        stderr(&token)
    );
    let with_jwt = cfg.clone().env("PAYGATE_E2E_SURELY_UNSET_SECRET", SECRET);
    let token = run(&with_jwt, &["token", "--user", "alice", "--config", path]);
    assert_eq!(token.status.code(), Some(0), "{}", stderr(&token));
    assert_eq!(verify(stdout(&token).trim_end())["sub"], "alice");

    // `check-config` vouches for `serve`: it needs every secret.
    let check = run(&cfg, &["check-config", "--config", path]);
    assert_problems(
        &check,
        &[
            "PAYGATE_E2E_SURELY_UNSET_SECRET",
            "PAYGATE_E2E_SURELY_UNSET_WHSEC",
        ],
    );
}

// --- completions ---

#[test]
fn completions_are_printed_for_each_shell_without_a_config() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _paygate"),
        ("zsh", "#compdef paygate"),
        ("fish", "complete -c paygate"),
    ] {
        let out = paygate()
            .args(["completions", shell])
            .current_dir(dir.path())
            .output()
            .expect("run paygate");
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("check-config"),
            "{shell} completes subcommands"
        );
    }
    let bad = paygate().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

// --- demo ---

/// A running `paygate demo`, killed on drop.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_a_402_and_a_pass_with_the_tokens_it_prints() {
    use std::io::{BufRead, BufReader};
    // From an empty directory: the demo carries its own config and users.
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo(
        paygate()
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--app-listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn paygate demo"),
    );
    let stdout = demo.0.stdout.take().unwrap();
    // The printed instructions, up to their last line, read off the async runtime.
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let last = line.starts_with("Ctrl-C");
            lines.push(line);
            if last {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(DEADLINE, lines)
        .await
        .expect("the demo printed its instructions in time")
        .unwrap();
    let text = lines.join("\n");
    let addr: std::net::SocketAddr = lines
        .first()
        .and_then(|l| l.strip_prefix("paygate demo listening on http://"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {text}"));
    let token_of = |user: &str| -> String {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("# {user}:")))
            .unwrap_or_else(|| panic!("no curl line for {user}: {text}"));
        let start = line.find("Bearer ").expect("a bearer token") + "Bearer ".len();
        let end = start + line[start..].find('\'').expect("quoted token");
        line[start..end].to_string()
    };

    let pass = send(addr, get("/api/banking").bearer(&token_of("alice"))).await;
    assert_eq!(pass.status, 200, "alice: {}", pass.text());
    assert!(
        pass.text().contains("app saw GET /api/banking")
            && pass.text().contains("x-user-id: alice"),
        "forwarded to the echo app with the identity: {}",
        pass.text()
    );
    let refused = send(addr, get("/api/banking").bearer(&token_of("bob"))).await;
    assert_error(&refused, 402, "SUBSCRIPTION_REQUIRED");
    drop(demo);
}
