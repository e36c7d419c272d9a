//! A headless Chromium driven over the DevTools protocol: just what the `plumb ui` tests need
//! (open a page, run JavaScript in it, press keys, take screenshots), over one websocket.
//!
//! Chromium is the Debian package `chromium` (`e2e/deps.sh` installs it); `PLUMB_CHROMIUM`
//! names another binary.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    socket: Mutex<Socket>,
    session: String,
    next_id: AtomicU64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and a `width`×`height` window, and opens a blank page.
    pub async fn launch(width: u32, height: u32) -> Result<Self, String> {
        let binary = std::env::var("PLUMB_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().map_err(|e| format!("profile dir: {e}"))?;
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless=new",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                // A container's /dev/shm is often 64 MiB, too small for a page's renderer.
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Chromium's sandbox needs user namespaces, which root in a container rarely has.
        if std::env::var("USER").as_deref() == Ok("root") || is_root() {
            command.arg("--no-sandbox");
        }
        let mut child = command.spawn().map_err(|e| {
            format!("starting {binary}: {e} (install the Debian package chromium: e2e/deps.sh)")
        })?;
        let stderr = child.stderr.take().ok_or("chromium has no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let url = loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        break url.trim().to_owned();
                    }
                    seen.push(line);
                }
                Ok(None) | Err(_) => {
                    return Err(format!(
                        "{binary} ended before listening:\n{}",
                        seen.join("\n")
                    ));
                }
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        let mut browser = Self {
            child,
            socket: Mutex::new(socket),
            session: String::new(),
            next_id: AtomicU64::new(1),
            _profile: profile,
        };
        let target = browser
            .send(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].as_str().ok_or("no targetId")?.to_owned();
        let attached = browser
            .send(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or("no sessionId")?
            .to_owned();
        browser.call("Page.enable", json!({})).await?;
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await?;
        Ok(browser)
    }

    /// Sends one command (to the page's session, or the browser when `session` is `None`) and
    /// returns its result; events arriving meanwhile are skipped.
    async fn send(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut socket = self.socket.lock().await;
        socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        while let Some(reply) = socket.next().await {
            let reply = reply.map_err(|e| format!("{method}: {e}"))?;
            let Message::Text(text) = reply else { continue };
            let value: Value = serde_json::from_str(&text).map_err(|e| format!("{method}: {e}"))?;
            if value["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = value.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(value["result"].clone());
        }
        Err(format!("{method}: the browser closed the connection"))
    }

    /// A command to the page.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.send(Some(&self.session), method, params).await
    }

    /// Opens `url` in the page (returns once navigation started; wait for content after).
    pub async fn open(&self, url: &str) -> Result<(), String> {
        let result = self.call("Page.navigate", json!({ "url": url })).await?;
        match result.get("errorText") {
            Some(e) => Err(format!("opening {url}: {e}")),
            None => Ok(()),
        }
    }

    /// The value of JavaScript `expression` in the page (promises awaited).
    pub async fn eval(&self, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(e) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {e}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// The visible text of the page's element matching `selector` (empty when there is none).
    pub async fn text(&self, selector: &str) -> Result<String, String> {
        let expression = format!(
            "(document.querySelector({}) || {{ innerText: '' }}).innerText",
            json!(selector)
        );
        Ok(self
            .eval(&expression)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Presses and releases a key (`Tab`, `Enter`, ...) as a keyboard would, with `shift` held
    /// or not.
    pub async fn press(&self, key: &str, shift: bool) -> Result<(), String> {
        let (code, key_code, text) = match key {
            "Tab" => ("Tab", 9, ""),
            "Enter" => ("Enter", 13, "\r"),
            "Escape" => ("Escape", 27, ""),
            other => return Err(format!("key {other} is not known to this client")),
        };
        let modifiers = if shift { 8 } else { 0 };
        for kind in ["keyDown", "keyUp"] {
            let mut params = json!({
                "type": kind, "key": key, "code": code, "modifiers": modifiers,
                "windowsVirtualKeyCode": key_code, "nativeVirtualKeyCode": key_code,
            });
            if kind == "keyDown" && !text.is_empty() {
                params["text"] = json!(text);
            }
            self.call("Input.dispatchKeyEvent", params).await?;
        }
        Ok(())
    }

    /// Writes a PNG of the whole page (not only the window) to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &metrics["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(1280.0),
            size["height"].as_f64().unwrap_or(800.0),
        );
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true,
                        "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 } }),
            )
            .await?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot: {e}"))?;
        std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
