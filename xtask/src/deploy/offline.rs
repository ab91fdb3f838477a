//! What makes `deploy --dry-run` offline: a stand-in CloudFormation on 127.0.0.1 and the environment
//! that sends the Serverless Framework's AWS calls there with throw-away credentials.
//!
//! `serverless package` makes one AWS call: `DescribeStacks`, to reuse an already uploaded layer
//! whose hash is unchanged (osls `lib/plugins/aws/package/compile/layers.js`,
//! `compareWithLastLayer`). It treats "Stack with id ... does not exist" as a first deployment, so
//! that is what the stand-in answers; any other call is refused with a message naming it, and the
//! package step then fails instead of reaching AWS.
//!
//! Serverless v3 calls AWS through the AWS SDK for JavaScript v2, which ignores `AWS_ENDPOINT_URL`.
//! A small script preloaded with `NODE_OPTIONS=--require` sets the SDK's global `endpoint` (every
//! service client inherits it) before Serverless starts; the service file is not touched.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// The largest request the stand-in reads (a `DescribeStacks` form is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The preload script: point the AWS SDK v2 that Serverless loads at the stand-in.
const PRELOAD: &str = r#"'use strict';
// Written by `cargo xtask deploy --dry-run`: send every AWS SDK v2 call to the local stand-in.
const path = require('path');
const endpoint = process.env.XTASK_DRY_RUN_ENDPOINT;
const serverlessDir = process.env.XTASK_DRY_RUN_SERVERLESS_DIR;
if (!endpoint || !serverlessDir) {
  throw new Error('xtask dry-run preload: XTASK_DRY_RUN_ENDPOINT or XTASK_DRY_RUN_SERVERLESS_DIR is not set');
}
const sdk = require(require.resolve('aws-sdk', { paths: [serverlessDir, path.join(serverlessDir, 'node_modules')] }));
sdk.config.update({ endpoint, s3ForcePathStyle: true, maxRetries: 0 });
"#;

/// A stand-in CloudFormation endpoint on 127.0.0.1, stopped when dropped.
pub(crate) struct StandInCloudFormation {
    address: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    actions: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
    preload_dir: tempfile::TempDir,
    /// The listening socket, alive while the accept loop runs (tests check that drop closes it).
    #[cfg(test)]
    listening: std::sync::Weak<TcpListener>,
}

impl StandInCloudFormation {
    /// Listen on a free port of 127.0.0.1 and answer in a background thread.
    pub(crate) fn start() -> Result<StandInCloudFormation> {
        let listener = TcpListener::bind("127.0.0.1:0").context("starting the stand-in CloudFormation on 127.0.0.1")?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let actions = Arc::new(Mutex::new(Vec::new()));
        let preload_dir = tempfile::Builder::new().prefix("xtask-dry-run-").tempdir()?;
        fs_err::write(preload_dir.path().join("aws-endpoint.cjs"), PRELOAD)?;
        let listener = Arc::new(listener);
        #[cfg(test)]
        let listening = Arc::downgrade(&listener);
        let thread = {
            let (stop, actions) = (stop.clone(), actions.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let actions = actions.clone();
                        std::thread::spawn(move || answer(stream, &actions));
                    }
                }
            })
        };
        Ok(StandInCloudFormation {
            address,
            stop,
            actions,
            thread: Some(thread),
            preload_dir,
            #[cfg(test)]
            listening,
        })
    }

    /// The endpoint URL, `http://127.0.0.1:<port>`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The `Action`s answered so far, in order.
    pub(crate) fn actions(&self) -> Vec<String> {
        self.actions.lock().map(|actions| actions.clone()).unwrap_or_default()
    }

    /// Set up `command` (the Serverless Framework, installed in `serverless_dir`) to talk only to
    /// the stand-in, with throw-away credentials; the user's AWS configuration is not read.
    pub(crate) fn configure(&self, command: &mut Command, serverless_dir: &Path) {
        for name in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_SDK_LOAD_CONFIG",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "NODE_OPTIONS",
        ] {
            command.env_remove(name);
        }
        let preload = self.preload_dir.path().join("aws-endpoint.cjs");
        command
            .env("AWS_ACCESS_KEY_ID", "dry-run")
            .env("AWS_SECRET_ACCESS_KEY", "dry-run")
            // Files that do not exist: nothing is read from ~/.aws.
            .env("AWS_SHARED_CREDENTIALS_FILE", self.preload_dir.path().join("no-credentials"))
            .env("AWS_CONFIG_FILE", self.preload_dir.path().join("no-config"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_PROXY", "127.0.0.1")
            .env("XTASK_DRY_RUN_ENDPOINT", self.endpoint())
            .env("XTASK_DRY_RUN_SERVERLESS_DIR", serverless_dir)
            .env("NODE_OPTIONS", format!("--require \"{}\"", preload.display()))
            .env("SLS_TELEMETRY_DISABLED", "1")
            .env("SLS_NOTIFICATIONS_MODE", "off");
    }
}

impl Drop for StandInCloudFormation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Read one request and answer it: `DescribeStacks` with "does not exist", anything else refused.
fn answer(mut stream: TcpStream, actions: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let (status, body) = match read_form(&stream) {
        Ok(form) => {
            let action = form_value(&form, "Action").unwrap_or_else(|| "(no Action)".to_string());
            if let Ok(mut list) = actions.lock() {
                list.push(action.clone());
            }
            if action == "DescribeStacks" {
                let stack = form_value(&form, "StackName").unwrap_or_default();
                (400, error_xml("ValidationError", &format!("Stack with id {stack} does not exist")))
            } else {
                (
                    400,
                    error_xml(
                        "XtaskDryRun",
                        &format!("cargo xtask deploy --dry-run is offline and does not answer {action}"),
                    ),
                )
            }
        }
        Err(problem) => (400, error_xml("XtaskDryRun", &problem)),
    };
    let reply = format!(
        "HTTP/1.1 {status} Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// The body of an HTTP/1.1 request (the AWS query protocol sends a form).
fn read_form(stream: &TcpStream) -> Result<String, String> {
    let mut reader = BufReader::new(stream.take(MAX_REQUEST_BYTES as u64));
    let mut content_length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| format!("reading the request: {e}"))?;
        if read == 0 {
            return Err("the request ended before its headers did".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().map_err(|_| format!("bad Content-Length {value:?}"))?;
        }
    }
    if content_length > MAX_REQUEST_BYTES {
        return Err(format!("a request body of {content_length} bytes is larger than any CloudFormation query"));
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).map_err(|e| format!("reading the request body: {e}"))?;
    String::from_utf8(body).map_err(|_| "the request body is not UTF-8".into())
}

/// The decoded value of `key` in an `application/x-www-form-urlencoded` body.
fn form_value(form: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(form.as_bytes()).find(|(name, _)| name == key).map(|(_, value)| value.into_owned())
}

/// A CloudFormation error reply (<https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/CommonErrors.html>).
fn error_xml(code: &str, message: &str) -> String {
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error><Type>Sender</Type>\
         <Code>{}</Code><Message>{}</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId>\
         </ErrorResponse>",
        escape(code),
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// POST a form to the stand-in and return the reply.
    fn post(endpoint: &str, form: &str) -> String {
        let address = endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn describe_stacks_is_a_first_deployment_and_other_calls_are_refused() {
        let stand_in = StandInCloudFormation::start().unwrap();
        assert!(stand_in.endpoint().starts_with("http://127.0.0.1:"));
        let reply = post(&stand_in.endpoint(), "Action=DescribeStacks&Version=2010-05-15&StackName=svc-dev");
        assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
        assert!(
            reply.ends_with(
                "<Code>ValidationError</Code><Message>Stack with id svc-dev does not exist</Message></Error>\
                 <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            ),
            "{reply}"
        );
        let reply = post(&stand_in.endpoint(), "Action=CreateStack&StackName=svc-dev");
        assert!(
            reply
                .contains("<Message>cargo xtask deploy --dry-run is offline and does not answer CreateStack</Message>"),
            "{reply}"
        );
        assert_eq!(stand_in.actions(), ["DescribeStacks", "CreateStack"]);
    }

    #[test]
    fn the_stand_in_stops_when_dropped() {
        let stand_in = StandInCloudFormation::start().unwrap();
        let listening = stand_in.listening.clone();
        let preload = stand_in.preload_dir.path().to_path_buf();
        assert!(listening.upgrade().is_some());
        drop(stand_in);
        // The socket itself is gone (connecting to the port would race with other tests that
        // may bind the same free port right after).
        assert!(listening.upgrade().is_none(), "the stand-in's socket is still open");
        assert!(!preload.exists(), "the preload script was left behind");
    }

    #[test]
    fn the_child_gets_throw_away_credentials_and_no_profile() {
        let stand_in = StandInCloudFormation::start().unwrap();
        let mut command = Command::new("env");
        command.env("AWS_PROFILE", "production").env("AWS_SESSION_TOKEN", "secret");
        stand_in.configure(&mut command, Path::new("/srv/node_modules/osls"));
        let output = command.output().unwrap();
        let env = String::from_utf8_lossy(&output.stdout);
        assert!(!env.contains("AWS_PROFILE=") && !env.contains("secret"), "{env}");
        assert!(env.contains("AWS_ACCESS_KEY_ID=dry-run\n"), "{env}");
        assert!(env.contains(&format!("XTASK_DRY_RUN_ENDPOINT={}\n", stand_in.endpoint())), "{env}");
        assert!(env.contains("NODE_OPTIONS=--require "), "{env}");
    }
}
