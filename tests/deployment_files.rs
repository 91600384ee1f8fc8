//! The production setup, checked by its structure: this project's CI machine has no Docker
//! engine, so `docker-compose.yml` and the `Dockerfile` are never run here. They are read and
//! held against the code (topic names, configuration settings) and the README (every setting
//! and every `PACKWELL_*` name documented).

use packwell::config::Config;
use packwell::kafka::{
    TOPIC_COUPONS, TOPIC_CUSTOMER_PREFERENCES, TOPIC_ORDERS, TOPIC_ORDERS_DLQ,
    TOPIC_PACKING_INSTRUCTIONS, broker::TOPICS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

const SERVICES: &[&str] = &["kafka", "kafka-init", "postgres", "mailpit", "packwell"];

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read("docker-compose.yml"))
        .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "docker-compose.yml: one YAML document");
    docs.remove(0)
}

fn service<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &doc["services"][name];
    assert!(s.is_hash(), "docker-compose.yml: no service {name:?}");
    s
}

/// A scalar as compose reads it: environment values and ports may be written as numbers.
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment`, in either of compose's forms (a map, or a list of `NAME=value`).
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match &service["environment"] {
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| {
                let k = scalar(k).expect("an environment name");
                let v = scalar(v).unwrap_or_else(|| panic!("{k}: a value"));
                (k, v)
            })
            .collect(),
        Yaml::Array(a) => a
            .iter()
            .map(|item| {
                let item = item.as_str().expect("NAME=value");
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Yaml::BadValue => BTreeMap::new(),
        other => panic!("environment: unexpected {other:?}"),
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a.iter().filter_map(scalar).collect(),
        Yaml::BadValue => Vec::new(),
        other => vec![scalar(other).expect("a string or a list of strings")],
    }
}

/// The container ports a service publishes (`"HOST:CONTAINER"`, `"CONTAINER"`, or the long
/// form with `target`).
fn container_ports(service: &Yaml) -> Vec<u16> {
    let Yaml::Array(ports) = &service["ports"] else {
        return Vec::new();
    };
    ports
        .iter()
        .map(|p| {
            let text = match p {
                Yaml::Hash(_) => scalar(&p["target"]).expect("ports: target"),
                other => scalar(other).expect("ports: a string"),
            };
            let container = text.rsplit(':').next().unwrap();
            let container = container.split('/').next().unwrap();
            container
                .parse()
                .unwrap_or_else(|_| panic!("ports: {text:?}"))
        })
        .collect()
}

fn depends_on_condition(service: &Yaml, on: &str) -> Option<String> {
    scalar(&service["depends_on"][on]["condition"])
}

/// Every `PACKWELL_*` name the setup gives Packwell: the compose file's (any service) and the
/// Dockerfile's `ENV`.
fn packwell_variables() -> BTreeMap<String, String> {
    let doc = compose();
    let mut vars = BTreeMap::new();
    for (_, s) in doc["services"].as_hash().expect("services") {
        for (k, v) in environment(s) {
            if k.starts_with("PACKWELL_") {
                vars.insert(k, v);
            }
        }
    }
    for (instruction, args) in dockerfile() {
        if instruction == "ENV" {
            for assignment in args.split_whitespace() {
                if let Some((k, v)) = assignment.split_once('=')
                    && k.starts_with("PACKWELL_")
                {
                    vars.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    vars
}

/// Every setting of [`Config`] as `(section, key, default)`. Walked from `Config::default()`
/// serialized with serde: through JSON rather than TOML, because TOML has no null and drops the
/// settings whose default is "not set" (`[kafka] brokers`, `[store] url`, ...).
fn settings() -> Vec<(String, String, serde_json::Value)> {
    let value = serde_json::to_value(Config::default()).unwrap();
    let mut out = Vec::new();
    for (section, keys) in value.as_object().unwrap() {
        let keys = keys
            .as_object()
            .unwrap_or_else(|| panic!("[{section}] is a table"));
        for (key, default) in keys {
            out.push((section.clone(), key.clone(), default.clone()));
        }
    }
    assert!(out.len() >= 15, "{out:?}");
    out
}

fn env_name(section: &str, key: &str) -> String {
    format!("PACKWELL_{section}_{key}").to_ascii_uppercase()
}

/// The README's Configuration table: setting cell → (environment cell, default cell).
fn readme_configuration() -> BTreeMap<String, (String, String)> {
    let readme = read("README.md");
    let start = readme
        .find("\n## Configuration\n")
        .expect("README: a \"## Configuration\" section");
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut rows = BTreeMap::new();
    for line in section[..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 3 || cells[0].starts_with("---") || cells[0] == "setting" {
            continue;
        }
        rows.insert(
            cells[0].to_string(),
            (cells[1].to_string(), cells[2].to_string()),
        );
    }
    assert!(!rows.is_empty(), "README: the Configuration table");
    rows
}

/// `docker-compose.yml`'s `$$` is a literal `$` for the container's shell.
fn init_script(doc: &Yaml) -> String {
    let init = service(doc, "kafka-init");
    let mut text = strings(&init["entrypoint"]);
    text.extend(strings(&init["command"]));
    text.join("\n").replace("$$", "$")
}

fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((instruction.to_ascii_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn the_five_services_exist() {
    let doc = compose();
    let names: BTreeSet<&str> = doc["services"]
        .as_hash()
        .expect("docker-compose.yml: services")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    for name in SERVICES {
        assert!(names.contains(name), "no service {name:?} in {names:?}");
    }
    let image = |name: &str| scalar(&service(&doc, name)["image"]).unwrap_or_default();
    assert!(
        image("kafka").starts_with("apache/kafka:"),
        "{}",
        image("kafka")
    );
    assert_eq!(
        image("kafka-init"),
        image("kafka"),
        "kafka-init uses Kafka's own tools"
    );
    assert!(image("postgres").starts_with("postgres:"));
    assert!(image("mailpit").starts_with("axllent/mailpit"));
    assert!(
        scalar(&service(&doc, "packwell")["build"]).is_some()
            || service(&doc, "packwell")["build"].is_hash(),
        "packwell is built from the Dockerfile"
    );
}

#[test]
fn kafka_runs_in_kraft_mode() {
    let doc = compose();
    for (name, s) in doc["services"].as_hash().unwrap() {
        let name = name.as_str().unwrap();
        let image = scalar(&s["image"]).unwrap_or_default();
        assert!(
            !name.contains("zookeeper") && !image.contains("zookeeper"),
            "a ZooKeeper service: {name} ({image})"
        );
    }
    let kafka = service(&doc, "kafka");
    let env = environment(kafka);
    assert!(!env.contains_key("KAFKA_ZOOKEEPER_CONNECT"));
    let roles: BTreeSet<&str> = env["KAFKA_PROCESS_ROLES"]
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(roles, BTreeSet::from(["broker", "controller"]));
    assert!(env.contains_key("KAFKA_NODE_ID"));
    let node = &env["KAFKA_NODE_ID"];
    let voters = &env["KAFKA_CONTROLLER_QUORUM_VOTERS"];
    assert!(voters.starts_with(&format!("{node}@")), "{voters}");
    assert!(env.contains_key("KAFKA_CONTROLLER_LISTENER_NAMES"));
    for factor in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ] {
        assert_eq!(env.get(factor).map(String::as_str), Some("1"), "{factor}");
    }
    assert!(
        kafka["healthcheck"]["test"].as_vec().is_some(),
        "kafka has a healthcheck"
    );

    // The host reaches the broker at localhost:9092, containers at an advertised listener, and
    // Packwell is given the latter.
    assert!(container_ports(kafka).contains(&9092));
    let advertised = &env["KAFKA_ADVERTISED_LISTENERS"];
    assert!(advertised.contains("://localhost:9092"), "{advertised}");
    let brokers = &environment(service(&doc, "packwell"))["PACKWELL_KAFKA_BROKERS"];
    for broker in brokers.split(',') {
        assert!(
            advertised.contains(&format!("://{broker}")),
            "PACKWELL_KAFKA_BROKERS={brokers} is not advertised: {advertised}"
        );
    }
}

#[test]
fn init_creates_every_topic() {
    let doc = compose();
    let init = service(&doc, "kafka-init");
    assert_eq!(
        depends_on_condition(init, "kafka").as_deref(),
        Some("service_healthy")
    );
    let script = init_script(&doc);

    // topic → partitions, from each `kafka-topics.sh ... --create` line.
    let mut created = BTreeMap::new();
    for line in script.lines().filter(|l| l.contains("--create")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        assert!(
            line.contains("kafka-topics.sh") || line.contains("$topics"),
            "{line}"
        );
        assert!(words.contains(&"--if-not-exists"), "{line}");
        let topic = after("--topic").unwrap_or_else(|| panic!("no --topic: {line}"));
        let partitions: i32 = after("--partitions")
            .unwrap_or("1")
            .parse()
            .unwrap_or_else(|_| panic!("--partitions: {line}"));
        created.insert(topic.to_string(), partitions);
    }
    for topic in [
        TOPIC_ORDERS,
        TOPIC_PACKING_INSTRUCTIONS,
        TOPIC_COUPONS,
        TOPIC_ORDERS_DLQ,
        TOPIC_CUSTOMER_PREFERENCES,
    ] {
        assert!(
            created.contains_key(topic),
            "{topic} is not created: {created:?}"
        );
    }
    assert_eq!(
        created.get(TOPIC_ORDERS),
        Some(&6),
        "orders has 6 partitions"
    );
    let expected: BTreeMap<String, i32> = TOPICS.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    assert_eq!(
        created, expected,
        "the same topics as the development broker"
    );
}

#[test]
fn packwell_service_is_wired() {
    let doc = compose();
    let packwell = service(&doc, "packwell");
    assert!(container_ports(packwell).contains(&8080));
    assert_eq!(
        depends_on_condition(packwell, "kafka-init").as_deref(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        depends_on_condition(packwell, "postgres").as_deref(),
        Some("service_healthy")
    );
    let volumes = strings(&packwell["volumes"]);
    for target in ["/app/data", "/app/rules", "/app/templates"] {
        assert!(
            volumes.iter().any(|v| v.split(':').nth(1) == Some(target)),
            "no volume at {target}: {volumes:?}"
        );
    }
    assert!(volumes.iter().any(|v| v.starts_with("./rules:")));
    assert!(volumes.iter().any(|v| v.starts_with("./templates:")));

    // The mounted configuration file is the one `run` is told to read, and it gives the
    // stations tokens (as digests) for both warehouses.
    let mounted = volumes
        .iter()
        .find(|v| v.split(':').nth(1) == Some("/app/packwell.toml"))
        .expect("a configuration file mounted at /app/packwell.toml");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(mounted.split(':').next().unwrap());
    assert_eq!(
        strings(&packwell["command"]),
        ["run", "--config", "/app/packwell.toml"]
    );

    // What Packwell is told points at the other services.
    let config = Config::load(Some(&file), packwell_variables()).unwrap();
    let tokens = &config.http.tokens;
    assert!(
        tokens
            .iter()
            .all(|t| t.token.is_none() && t.token_sha256.is_some()),
        "{tokens:?}"
    );
    for warehouse in ["WH-BER", "WH-NYC"] {
        assert!(
            tokens.iter().any(|t| t
                .warehouses
                .as_ref()
                .is_some_and(|w| w.iter().any(|w| w == warehouse))),
            "no token for {warehouse}"
        );
    }
    let host = |url: &str| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        rest.split([':', '/']).next().unwrap().to_string()
    };
    assert_eq!(host(config.kafka.brokers.as_deref().unwrap()), "kafka");
    let store = config.store.url.as_deref().unwrap();
    assert!(store.starts_with("postgres://"), "{store}");
    assert_eq!(host(store), "postgres");
    let pg = environment(service(&doc, "postgres"));
    assert!(
        store.ends_with(&format!("/{}", pg["POSTGRES_DB"])),
        "{store}"
    );
    assert!(
        store.contains(&format!(
            "{}:{}@",
            pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]
        )),
        "{store}"
    );
    assert_eq!(config.email.provider, "smtp");
    assert_eq!(config.email.smtp_host.as_deref(), Some("mailpit"));
    assert_eq!(config.email.smtp_port, 1025);
    assert_eq!(config.http.listen, "0.0.0.0:8080");
    assert!(config.coupons.key_file.starts_with("/app/data"));
}

#[test]
fn every_packwell_variable_is_a_documented_setting() {
    let vars = packwell_variables();
    assert!(vars.contains_key("PACKWELL_KAFKA_BROKERS"), "{vars:?}");
    if let Err(e) = Config::load(None, vars.clone()) {
        panic!("the compose file's configuration does not load: {e}");
    }
    // `Config::load` passes over a PACKWELL_ name that names no section: require each name to
    // be exactly one setting's.
    let known: BTreeSet<String> = settings()
        .iter()
        .map(|(section, key, _)| env_name(section, key))
        .collect();
    let documented: BTreeSet<String> = readme_configuration()
        .values()
        .map(|(env, _)| env.trim_matches('`').to_string())
        .collect();
    for name in vars.keys() {
        assert!(known.contains(name), "{name} is no configuration setting");
        assert!(
            documented.contains(name),
            "{name} is not in the README's Configuration table"
        );
    }
}

#[test]
fn every_setting_is_in_the_readme() {
    let table = readme_configuration();
    for (section, key, default) in settings() {
        let setting = format!("`[{section}] {key}`");
        let Some((env, default_cell)) = table.get(&setting) else {
            panic!("README's Configuration table has no row {setting}");
        };
        match &default {
            // Tables in an array (`[[http.tokens]]`) are set in the file only.
            serde_json::Value::Array(_) => {}
            _ => assert_eq!(env, &format!("`{}`", env_name(&section, &key)), "{setting}"),
        }
        let shown = match &default {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        if let Some(shown) = shown {
            assert!(
                default_cell.contains(&format!("`{shown}`")),
                "{setting}: the README's default {default_cell:?} is not `{shown}`"
            );
        }
    }
}

#[test]
fn readme_says_the_setup_is_checked_not_run() {
    let readme = read("README.md");
    assert!(readme.contains("## Production setup (docker compose)"));
    assert!(readme.contains("tests/deployment_files.rs"));
    assert!(readme.contains("no Docker engine"));
}

#[test]
fn dockerfile_is_multi_stage() {
    let instructions = dockerfile();
    let froms: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(froms.len() >= 2, "a builder stage and a runtime stage");
    let (_, builder) = &instructions[froms[0]];
    assert!(builder.starts_with("rust:"), "{builder}");
    let builder_name = builder.rsplit(' ').next().unwrap();
    let last = *froms.last().unwrap();
    assert!(instructions[last].1.starts_with("debian:bookworm-slim"));
    let build_stage = &instructions[froms[0]..last];
    assert!(
        build_stage
            .iter()
            .any(|(i, a)| i == "RUN" && a.contains("cargo build --release --locked"))
    );
    assert!(
        build_stage
            .iter()
            .any(|(i, a)| i == "RUN" && a.contains("cargo fetch"))
    );

    let runtime = &instructions[last..];
    let has = |instruction: &str, pred: &dyn Fn(&str) -> bool| {
        runtime.iter().any(|(i, a)| i == instruction && pred(a))
    };
    assert!(has("COPY", &|a| a.contains(&format!("--from={builder_name}"))));
    for folder in ["rules", "templates"] {
        assert!(
            has("COPY", &|a| a.split_whitespace().next_back().is_some_and(
                |dest| { dest.trim_end_matches('/').ends_with(folder) }
            ) && a.split_whitespace().any(|w| w == folder)),
            "the runtime stage copies {folder}/"
        );
    }
    assert!(has("EXPOSE", &|a| a
        .split_whitespace()
        .any(|p| p == "8080" || p == "8080/tcp")));
    assert!(has("WORKDIR", &|a| a == "/app"));
    assert!(has("VOLUME", &|a| a.contains("/app/data")));
    assert!(has("USER", &|a| a != "root" && a != "0"));
    assert!(has("ENTRYPOINT", &|a| a == r#"["packwell"]"#));
    assert!(has("CMD", &|a| a == r#"["run"]"#));
    // The slim image has no curl: the health check must not need it unless it is installed.
    assert!(has("HEALTHCHECK", &|a| a.contains("/healthz")));
    let installs_curl = runtime
        .iter()
        .any(|(i, a)| i == "RUN" && a.contains("install") && a.contains("curl"));
    assert!(installs_curl || !has("HEALTHCHECK", &|a| a.contains("curl")));

    let ignore = read(".dockerignore");
    for entry in ["target", "data", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim().trim_matches('/') == entry),
            ".dockerignore: {entry}"
        );
    }
}
