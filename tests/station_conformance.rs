//! The HTTP API (packing stations, unsubscribe links, bounces) against its own OpenAPI
//! document, by tools that know nothing of Packwell: `openapi-spec-validator` checks the
//! document is valid OpenAPI 3.1, and schemathesis generates requests from it (valid and
//! invalid ones, with and without the token) and checks every answer against the document:
//! status codes, content types and bodies, no server errors, authentication enforced. Both
//! come from PyPI: `scripts/test-tools.sh` installs them (`.ci/run` runs it); without them the
//! test says so and is skipped, or fails under `PACKWELL_REQUIRE_TOOLS=1`.

mod service_support;

use service_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "conformance-token";

/// The tools' folder, with schemathesis and openapi-spec-validator in it.
fn tools() -> Option<PathBuf> {
    test_tools_or_skip("schemathesis and openapi-spec-validator", |bin| {
        bin.join("schemathesis").exists() && bin.join("openapi-spec-validator").exists()
    })
}

fn report(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn schemathesis_finds_nothing_against_the_openapi_document() {
    let Some(bin) = tools() else {
        return;
    };
    let broker = TestBroker::start();
    let work = Workdir::new();
    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        // A connector on, so that generated webhooks reach the signature check (401).
        format!(
            "[[http.tokens]]\nname = \"conformance\"\ntoken = \"{TOKEN}\"\n\
             [connectors.shopify]\nwebhook_secrets = [\"conformance-secret\"]\n"
        ),
    )
    .expect("config");
    let service = ServiceProcess::start_with_args(
        work.path(),
        &broker.addr,
        &[],
        &["--config", &config.display().to_string()],
    );
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders/first-book-order.json"),
    )
    .expect("example");
    produce(
        &broker.addr,
        &[(Some("C-1001".into()), example.into_bytes())],
    );
    wait_for("O-1001 to be decided", Duration::from_secs(60), || {
        metric(&service.get("/metrics").1, "packwell_orders_decided_total") >= 1.0
    });

    // The document itself.
    let (status, document) = service.get("/openapi.json");
    assert_eq!(status, 200);
    let document_file = work.path().join("openapi.json");
    std::fs::write(&document_file, document).expect("write document");
    let out = Command::new(bin.join("openapi-spec-validator"))
        .arg(&document_file)
        .output()
        .expect("openapi-spec-validator");
    assert!(out.status.success(), "{}", report(&out));

    // Generated requests, first with any order id (mostly unknown ones: 404), then with the
    // decided order, so that confirmations reach the checks behind the 404.
    let url = format!("http://{}/openapi.json", service.http);
    let checks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let with_order = work.path().join("schemathesis-order.toml");
    std::fs::write(
        &with_order,
        std::fs::read_to_string(&checks).expect("settings")
            + "\n[parameters]\n\"path.order_id\" = \"O-1001\"\n",
    )
    .expect("settings with the order");
    for (order_id, settings) in [(None, &checks), (Some("O-1001"), &with_order)] {
        let mut cmd = Command::new(bin.join("schemathesis"));
        cmd.arg("--config-file").arg(settings);
        cmd.args(["run", &url, "--checks", "all", "--max-examples", "40"])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args(["--seed", "1", "--workers", "2", "--no-color"])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(work.path());
        let out = cmd.output().expect("schemathesis");
        let text = report(&out);
        assert!(
            out.status.success(),
            "schemathesis (order id {order_id:?}) found failures:\n{text}"
        );
        assert!(
            text.contains("19 selected / 19 total"),
            "every operation: {text}"
        );
    }
}
