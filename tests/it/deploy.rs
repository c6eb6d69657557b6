//! The deployment artifacts in `deploy/` and the `Dockerfile` agree with the
//! binary: every metric the Grafana dashboard and the Prometheus rules query is
//! in a real scrape, the configs they ship pass `check-config`, probes and
//! ports point where the config listens, and `paygate healthcheck` (the
//! image's `HEALTHCHECK`) tells a live gateway from a dead one.
//!
//! No container engine or cluster runs here: the manifests are read as YAML
//! and checked for the invariants a typo would break.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::admin::admin_of;
use crate::support::https::{h1_tls, send_h1, whole};
use crate::support::jwt;
use crate::support::stripe::{apply, checkout_completed, with_stripe};
use crate::support::*;

/// Long enough for any token; at least the 16 bytes `admin.token` demands.
const ADMIN_TOKEN: &str = "deploy-test-admin-token-0123456789";

/// The secrets every shipped config takes from the environment, with values
/// that pass validation.
const SECRETS: &[(&str, &str)] = &[
    ("PAYGATE_JWT_SECRET", "a-deploy-test-secret-of-32-bytes!"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_deploytest"),
    ("PAYGATE_ADMIN_TOKEN", ADMIN_TOKEN),
];

/// The variables that replace one key of the file; cleared around each
/// command here so the caller's environment cannot leak in.
const OVERRIDES: &[&str] = &[
    "PAYGATE_LISTEN",
    "PAYGATE_UPSTREAM_URL",
    "PAYGATE_REDIS_URL",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Every YAML document of a file, as JSON values.
fn yaml_documents(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn yaml(path: &str) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(docs.len(), 1, "{path}: one document expected");
    docs.remove(0)
}

/// Every string under a key named `key`, anywhere in `value`.
fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k == key, v) {
                    (true, Value::String(s)) => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// The identifiers of a PromQL expression, string literals skipped.
fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            while let Some(d) = chars.next() {
                if d == '\\' {
                    chars.next();
                } else if d == c {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut ident = c.to_string();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    ident.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(ident);
        } else if c.is_ascii_digit() {
            // A number such as 1e-9 or 0.001 is not a name.
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                chars.next();
            }
        }
    }
    out
}

/// The metric names of paygate's own exposition a set of expressions uses
/// (`up` and recording rules are Prometheus's).
fn paygate_metrics(exprs: &[String]) -> BTreeSet<String> {
    exprs
        .iter()
        .flat_map(|e| identifiers(e))
        .filter(|name| name.starts_with("paygate_") || name.starts_with("process_"))
        .collect()
}

/// The metric names (series names, `_bucket` and all) of a text exposition.
fn scraped_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

/// `"25s"`, `"2m"` as seconds (the forms the shipped configs use).
fn seconds(text: &str) -> u64 {
    let (n, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {text:?}"));
    match unit {
        "s" | "" => n,
        "m" => n * 60,
        other => panic!("duration {text:?}: unit {other:?} not handled here"),
    }
}

fn port(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// `paygate check-config` on a config text (written to a temp dir) with `env`.
fn check_config(text: &str, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paygate.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = paygate();
    cmd.arg("check-config").arg("--config").arg(&path);
    for var in SECRETS.iter().map(|(k, _)| k).chain(OVERRIDES) {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run paygate check-config")
}

/// The admin listener's address, from the gateway's second stdout line
/// (`paygate admin listening on http://…`).
async fn admin_addr(gw: &Gateway) -> std::net::SocketAddr {
    const PREFIX: &str = "[stdout] paygate admin listening on http://";
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let log = gw.log();
        if let Some(line) = log.lines().find_map(|l| l.strip_prefix(PREFIX)) {
            return line.trim().parse().expect("admin address");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no admin line; log:\n{log}"
        );
        // Polling interval for the child's output, not a synchronization.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_query_is_exposed() {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/paygate.json")).expect("the dashboard is JSON");
    let mut dashboard_exprs = Vec::new();
    strings_under(&dashboard, "expr", &mut dashboard_exprs);
    strings_under(&dashboard, "definition", &mut dashboard_exprs);
    assert!(dashboard_exprs.len() >= 10, "{dashboard_exprs:?}");

    let rules = yaml("deploy/prometheus/alerts.yml");
    let mut rule_exprs = Vec::new();
    strings_under(&rules, "expr", &mut rule_exprs);
    let mut recorded = Vec::new();
    strings_under(&rules, "record", &mut recorded);
    // A recording rule an alert uses must be defined here.
    for name in rule_exprs.iter().flat_map(|e| identifiers(e)) {
        if name.contains(':') {
            assert!(
                recorded.contains(&name),
                "{name} is used but never recorded"
            );
        }
    }

    // TLS on, so the certificate gauge exists; one forwarded request, so the
    // histograms have a sample.
    let tls_dir = tempfile::tempdir().unwrap();
    let files = paygate_testkit::tls::generate(tls_dir.path());
    let (up, gw) = world(|c| {
        c.tls(&files)
            .set_str("admin.listen", "127.0.0.1:0")
            .set_str("admin.token", ADMIN_TOKEN)
    })
    .await;
    let mut sender = h1_tls(gw.addr, gw.ca.as_deref().unwrap()).await;
    let request = http::Request::get("/health")
        .header("host", "localhost")
        .body(whole(""))
        .unwrap();
    let answer = send_h1(&mut sender, request).await.expect("TLS request");
    assert_eq!(answer.status, 200);
    up.wait_requests(1).await;
    let scrape = admin_of(&gw).await.metrics().await;
    let mut exposed = scraped_names(&scrape);

    // The webhook lag histogram exists once an event was applied: a second,
    // plain gateway applies one.
    let (_up, webhooks) = world(|c| {
        with_stripe(c)
            .set_str("admin.listen", "127.0.0.1:0")
            .set_str("admin.token", ADMIN_TOKEN)
    })
    .await;
    apply(
        &webhooks,
        &checkout_completed(
            "evt_deploy_1",
            "lena",
            "cus_lena",
            "sub_lena",
            jwt::now() - 60,
        ),
    )
    .await;
    let webhook_scrape = admin_of(&webhooks).await.metrics().await;
    exposed.extend(scraped_names(&webhook_scrape));

    for (what, exprs) in [("dashboard", &dashboard_exprs), ("alerts.yml", &rule_exprs)] {
        let used = paygate_metrics(exprs);
        assert!(used.len() >= 5, "{what} uses {used:?}");
        let missing: Vec<_> = used.difference(&exposed).collect();
        assert!(
            missing.is_empty(),
            "{what} queries metrics /metrics does not have: {missing:?}\n--- scrape ---\n{scrape}"
        );
    }
    let used = paygate_metrics(&dashboard_exprs);
    assert!(used.contains("paygate_request_duration_seconds_bucket"));
    assert!(used.contains("paygate_tls_certificate_expiry_timestamp_seconds"));
    for name in [
        "paygate_build_info",
        "paygate_requests_in_flight",
        "paygate_webhook_lag_seconds_bucket",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(used.contains(name), "the dashboard shows {name}");
    }

    // The gauge holds the leaf's notAfter: the test CA's certificates run to
    // 4096-01-01 (rcgen's default).
    let expiry = scrape
        .lines()
        .find_map(|l| l.strip_prefix("paygate_tls_certificate_expiry_timestamp_seconds "))
        .expect("the expiry gauge has a value");
    assert_eq!(expiry.trim().parse::<f64>().unwrap(), 67_090_118_400.0);
}

#[test]
fn the_dashboard_names_only_its_own_datasource_variable() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/paygate.json")).unwrap();
    assert_eq!(dashboard["uid"], "paygate");
    // Every query's data source is the dashboard's `datasource` variable, so
    // an import picks the Prometheus it runs on.
    let mut uids = Vec::new();
    for part in ["panels", "templating", "annotations"] {
        strings_under(&dashboard[part], "uid", &mut uids);
    }
    assert!(uids.len() >= 10, "{uids:?}");
    assert!(uids.iter().all(|u| u == "${datasource}"), "{uids:?}");
}

#[tokio::test]
async fn healthcheck_exits_0_when_the_gateway_answers_and_1_otherwise() {
    let (up, gw) = world(|c| {
        c.set_str("admin.listen", "127.0.0.1:0")
            .set_str("admin.token", ADMIN_TOKEN)
    })
    .await;
    let admin = admin_addr(&gw).await;
    let free = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let run = |server: String, admin: Option<String>, args: &'static [&'static str]| {
        let mut config = Config::new(&up.url()).set_str("server.listen", &server);
        if let Some(admin) = admin {
            config = config
                .set_str("admin.listen", &admin)
                .set_str("admin.token", ADMIN_TOKEN);
        }
        async move {
            let dir = tempfile::tempdir().unwrap();
            let path = config.write_to(dir.path());
            let mut cmd = paygate();
            cmd.arg("healthcheck").arg("--config").arg(&path).args(args);
            let out = tokio::process::Command::from(cmd)
                .output()
                .await
                .expect("run paygate healthcheck");
            (out.status.code(), text(&out.stdout), text(&out.stderr))
        }
    };

    // The admin listener is asked when there is one, the public one otherwise.
    let (code, stdout, stderr) = run(gw.addr.to_string(), Some(admin.to_string()), &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("healthy: http://{admin}/healthz")),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(gw.addr.to_string(), None, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("healthy: http://{}/_paygate/healthz", gw.addr)),
        "{stdout}"
    );
    let (code, _, stderr) = run(gw.addr.to_string(), Some(admin.to_string()), &["--public"]).await;
    assert_eq!(code, Some(0), "{stderr}");

    // An address that answers something else than 200 (the admin listener has
    // no /_paygate/healthz), and one where nothing listens.
    let (code, _, stderr) = run(admin.to_string(), None, &[]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("unhealthy") && stderr.contains("404"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(
        gw.addr.to_string(),
        Some(free.to_string()),
        &["--timeout", "1s"],
    )
    .await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains(&format!("unhealthy: cannot connect to {free}")),
        "{stderr}"
    );
}

/// The `*_env` values of a compiled-to-TOML config: the variables it needs.
fn env_keys(config: &toml::Table) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, section) in config {
        if let toml::Value::Table(section) = section {
            for (key, value) in section {
                if let (true, toml::Value::String(var)) = (key.ends_with("_env"), value) {
                    out.insert(var.clone());
                }
            }
        }
    }
    out
}

#[test]
fn the_image_config_listens_everywhere_and_takes_its_secrets_from_the_documented_env() {
    let toml_text = read("deploy/container/paygate.toml");
    let config: toml::Table = toml_text.parse().expect("TOML");
    // The header documents each variable as `#   NAME   what it is`.
    let documented: BTreeSet<String> = toml_text
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_string)
        .collect();
    let needed = env_keys(&config);
    assert!(!needed.is_empty());
    assert!(
        needed.is_subset(&documented),
        "{needed:?} not all in {documented:?}"
    );
    for var in OVERRIDES {
        assert!(documented.contains(*var), "{var} undocumented");
    }

    let out = check_config(&toml_text, SECRETS);
    let stdout = text_of(&out);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("listen     0.0.0.0:8080"), "{stdout}");
    assert!(stdout.contains("admin      0.0.0.0:9090"), "{stdout}");

    // Without its secrets it names each missing variable.
    let out = check_config(&toml_text, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for var in &needed {
        assert!(
            stderr.contains(&format!("environment variable {var} is not set")),
            "{stderr}"
        );
    }

    // The overrides apply, and a bad one is named by its variable.
    let mut env = SECRETS.to_vec();
    env.extend([
        ("PAYGATE_UPSTREAM_URL", "http://app.internal:3000"),
        ("PAYGATE_REDIS_URL", "redis://redis.internal:6379/0"),
    ]);
    let out = check_config(&toml_text, &env);
    let stdout = text_of(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("upstream   http://app.internal:3000/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("redis redis://redis.internal:6379/0"),
        "{stdout}"
    );
    env.push(("PAYGATE_LISTEN", "everywhere:80"));
    let out = check_config(&toml_text, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("PAYGATE_LISTEN (server.listen): \"everywhere:80\" is not an address"),
        "{}",
        text(&out.stderr)
    );
}

fn text_of(out: &Output) -> String {
    text(&out.stdout)
}

#[test]
fn the_dockerfile_ships_the_image_config_runs_unprivileged_and_checks_health() {
    let dockerfile = read("Dockerfile");
    // Instructions with their continuation lines joined.
    let joined = dockerfile.replace("\\\n", " ");
    let instructions: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // Only the last stage (the runtime image) matters for these.
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap();
    let runtime = &instructions[last_from..];
    let in_runtime = |op: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter_map(|l| l.strip_prefix(op).and_then(|r| r.strip_prefix(' ')))
            .collect()
    };

    let healthcheck = in_runtime("HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1, "{healthcheck:?}");
    assert!(
        healthcheck[0].contains(r#"CMD ["paygate", "healthcheck""#),
        "exec form, no shell or curl needed: {healthcheck:?}"
    );

    let user = in_runtime("USER");
    assert_eq!(user.len(), 1);
    let uid = user[0].split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "USER {uid}");

    // The built-in config is the one checked above, and the process reads it.
    let copy = in_runtime("COPY")
        .into_iter()
        .find(|c| c.starts_with("deploy/container/paygate.toml "))
        .expect("COPY deploy/container/paygate.toml");
    let target = copy.split_whitespace().nth(1).unwrap();
    assert!(
        in_runtime("ENV").contains(&format!("PAYGATE_CONFIG={target}").as_str()),
        "ENV PAYGATE_CONFIG={target}"
    );

    let config: toml::Table = read("deploy/container/paygate.toml").parse().unwrap();
    let listen = |section: &str| port(config[section]["listen"].as_str().unwrap());
    let exposed: BTreeSet<u64> = in_runtime("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(exposed, BTreeSet::from([listen("server"), listen("admin")]));

    // No debug info in the image, and a dependency layer built before the sources arrive.
    assert!(joined.contains("CARGO_PROFILE_RELEASE_DEBUG=0"));
    let builds: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("RUN ") && l.contains("cargo build"))
        .map(|(i, _)| i)
        .collect();
    let copy_src = instructions
        .iter()
        .position(|l| l.starts_with("COPY src "))
        .expect("COPY src");
    assert_eq!(builds.len(), 2, "{builds:?}");
    assert!(builds[0] < copy_src && copy_src < builds[1]);
}

#[test]
fn kubernetes_manifests_agree_with_their_config() {
    let dir = "deploy/kubernetes";
    let kustomization = yaml(&format!("{dir}/kustomization.yaml"));
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk, "kustomization.yaml lists every manifest");

    let mut by_kind = std::collections::BTreeMap::new();
    for file in &listed {
        for doc in yaml_documents(&format!("{dir}/{file}")) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            by_kind.insert(kind, doc);
        }
    }
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(by_kind.contains_key(kind), "no {kind}");
    }

    let config_text = by_kind["ConfigMap"]["data"]["paygate.toml"]
        .as_str()
        .expect("ConfigMap data paygate.toml");
    let config: toml::Table = config_text
        .parse()
        .expect("the ConfigMap's paygate.toml is TOML");
    let deployment = &by_kind["Deployment"];
    let pod = &deployment["spec"]["template"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // Shutdown: the preStop sleep, then paygate's own grace, fit in the pod's.
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown_grace = seconds(config["server"]["shutdown_grace"].as_str().unwrap());
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("preStop sleep");
    assert_eq!(pre_stop[0], "sleep");
    let pre_stop: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    assert!(pre_stop > 0);
    assert!(
        grace > pre_stop + shutdown_grace,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + shutdown_grace {shutdown_grace}"
    );

    // Ports and probes: on the admin listener's port, at its paths.
    let named_port = |name: &str| -> u64 {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    let admin_port = port(config["admin"]["listen"].as_str().unwrap());
    assert_eq!(
        named_port("http"),
        port(config["server"]["listen"].as_str().unwrap())
    );
    assert_eq!(named_port("admin"), admin_port);
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = match &get["port"] {
            Value::String(name) => named_port(name),
            other => other.as_u64().unwrap(),
        };
        assert_eq!(port, admin_port, "{probe} on the admin listener");
    }
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"],
        admin_port.to_string()
    );

    // Unprivileged, read-only, with requests and limits.
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_ne!(spec["securityContext"]["runAsUser"], 0);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    for side in ["requests", "limits"] {
        assert!(container["resources"][side]["memory"].is_string(), "{side}");
    }

    // Every variable the config reads comes from a Secret.
    let env = container["env"].as_array().unwrap();
    let from_secret: BTreeSet<String> = env
        .iter()
        .filter(|e| e["valueFrom"]["secretKeyRef"]["name"].is_string())
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    let needed = env_keys(&config);
    assert!(
        needed.is_subset(&from_secret),
        "{needed:?} not all from a Secret: {from_secret:?}"
    );
    let config_path = env
        .iter()
        .find(|e| e["name"] == "PAYGATE_CONFIG")
        .and_then(|e| e["value"].as_str())
        .expect("PAYGATE_CONFIG");
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(config_path, format!("{mount}/paygate.toml"));

    // The selectors find the pods.
    let labels = &pod["metadata"]["labels"];
    for selector in [
        &deployment["spec"]["selector"]["matchLabels"],
        &by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        &by_kind["Service"]["spec"]["selector"],
    ] {
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(&labels[k], v, "selector {k}");
        }
    }
    assert_eq!(by_kind["Service"]["spec"]["ports"][0]["targetPort"], "http");

    // And the config itself is valid once the Secret's variables are set.
    let mut vars = SECRETS.to_vec();
    vars.push(("PAYGATE_REDIS_URL", "redis://redis:6379/0"));
    let out = check_config(config_text, &vars);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text_of(&out).contains("redis redis://redis:6379/0"));
}

#[test]
fn the_compose_demo_wires_redis_upstream_and_the_image_config() {
    let compose = yaml("deploy/docker-compose.yml");
    let services = &compose["services"];
    let paygate = &services["paygate"];
    let build = &paygate["build"];
    let context = Path::new("deploy").join(build["context"].as_str().unwrap());
    assert!(
        repo(
            context
                .join(build["dockerfile"].as_str().unwrap())
                .to_str()
                .unwrap()
        )
        .is_file(),
        "the build points at the Dockerfile"
    );

    let image_config: toml::Table = read("deploy/container/paygate.toml").parse().unwrap();
    let env = paygate["environment"].as_object().unwrap();
    for var in env_keys(&image_config) {
        assert!(env.contains_key(&var), "compose does not set {var}");
    }
    // Every secret is taken from the caller's environment (a demo fallback at most).
    for (var, _) in SECRETS {
        let value = env[*var].as_str().unwrap();
        assert!(value.starts_with(&format!("${{{var}")), "{var}: {value}");
    }

    // The upstream and Redis URLs point at the services next to it.
    let upstream = env["PAYGATE_UPSTREAM_URL"].as_str().unwrap();
    let upstream_port = services["upstream"]["environment"]["PORT"]
        .as_str()
        .unwrap();
    assert_eq!(upstream, format!("http://upstream:{upstream_port}"));
    assert!(env["PAYGATE_REDIS_URL"]
        .as_str()
        .unwrap()
        .starts_with("redis://redis:6379"));
    let depends = paygate["depends_on"].as_object().unwrap();
    assert!(depends.contains_key("redis") && depends.contains_key("upstream"));

    // Published ports are the image config's, the admin one on loopback only.
    let listen = |section: &str| port(image_config[section]["listen"].as_str().unwrap());
    let ports: Vec<&str> = paygate["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        ports.contains(&format!("{0}:{0}", listen("server")).as_str()),
        "{ports:?}"
    );
    assert!(
        ports.contains(&format!("127.0.0.1:{0}:{0}", listen("admin")).as_str()),
        "{ports:?}"
    );
    let stop = seconds(paygate["stop_grace_period"].as_str().unwrap());
    let shutdown_grace = seconds(image_config["server"]["shutdown_grace"].as_str().unwrap());
    assert!(
        stop > shutdown_grace,
        "stop_grace_period {stop} <= shutdown_grace {shutdown_grace}"
    );

    // The monitoring profile scrapes the admin port and loads the shipped rules.
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    assert_eq!(
        prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0],
        format!("paygate:{}", listen("admin"))
    );
    let mounts = services["prometheus"]["volumes"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m.as_str().unwrap().starts_with("./prometheus/alerts.yml:")));
}
