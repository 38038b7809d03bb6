//! Real headless Chromium (Debian's `chromium` through `chromedriver`, installed by
//! scripts/test) for the browser tests, and the waits they use.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub struct Driver {
    process: std::process::Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub async fn browser() -> (Client, Driver) {
    let chromedriver = std::env::var("TURNSTONE_TEST_CHROMEDRIVER")
        .expect("TURNSTONE_TEST_CHROMEDRIVER: run scripts/test");
    let chromium =
        std::env::var("TURNSTONE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let process = std::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver { process };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,900"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    (client, driver)
}

/// Polls a JavaScript expression until it is truthy; returns its value.
pub async fn until_js(c: &Client, expr: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap();
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return v;
        }
        if Instant::now() > deadline {
            let body = c
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap();
            panic!(
                "timed out waiting for {expr}; page:\n{}",
                body.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn click(c: &Client, css: &str) {
    // A view that re-renders between finding the element and clicking it leaves a stale
    // reference: find it again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = c
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        // Into the middle of the window, clear of the sticky header and status bar.
        let scrolled = c
            .execute(
                "arguments[0].scrollIntoView({block: 'center', inline: 'center'});",
                vec![serde_json::to_value(&e).unwrap()],
            )
            .await;
        let clicked = match scrolled {
            Ok(_) => e.click().await.map(|_| ()),
            Err(err) => Err(err),
        };
        match clicked {
            Ok(()) => return,
            Err(err) if attempt < 5 && is_stale(&err) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{css}: {err}"),
        }
    }
}

fn is_stale(err: &fantoccini::error::CmdError) -> bool {
    matches!(
        err,
        fantoccini::error::CmdError::Standard(w)
            if w.error == fantoccini::error::ErrorStatus::StaleElementReference
    )
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Saves a screenshot when `TURNSTONE_SCREENSHOTS` names a folder (to look at the pages).
pub async fn shot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("TURNSTONE_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}
