//! A real browser for the console's tests: Debian's chromium, headless, driven over WebDriver
//! by chromedriver (`TASK_TEST_CHROMEDRIVER` names another driver binary). Screenshots are saved
//! under `target/console-screenshots/`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::process::{Child, Command};

/// A browser session and the driver it runs under (killed on drop).
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    _driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless chromium session under it.
    pub async fn start() -> Self {
        let driver_path =
            std::env::var("TASK_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {driver_path} ({e}): the console's browser tests need Debian's \
                     chromium and chromium-driver (apt-get install chromium chromium-driver), or \
                     TASK_TEST_CHROMEDRIVER naming a chromedriver"
                )
            });
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                ]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("no WebDriver session from {driver_path} within 30 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Self {
            client,
            _driver: driver,
        }
    }

    /// The text of the element `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// The text of the element `css`, if the page has one now (a page being replaced has none
    /// for a moment).
    pub async fn text_now(&self, css: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Whether an element `css` is on the page.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Waits until the element `css` holds text containing `wanted`.
    pub async fn wait_for_text(&self, css: &str, wanted: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let found = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if found.contains(wanted) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} still shows {found:?} after {limit:?}, not {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot of the page as `target/console-screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
