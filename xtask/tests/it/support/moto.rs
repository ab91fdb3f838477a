//! Test support: a `moto_server` (local CloudFormation, S3 and Lambda) on 127.0.0.1, and fake AWS settings.
//!
//! `moto[server]` is installed from PyPI once into a private virtual environment under
//! `target/test-fixtures/` (built in a temporary directory and renamed into place, so concurrent test
//! processes never see half an environment). Each [`MotoServer`] runs in its own process group under
//! `timeout`, listens on a free loopback port, is waited for (bounded) and is stopped when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The moto release the tests are written against.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";
/// The fixture directory of that release's environment (change both together).
const MOTO_VENV_DIR: &str = "venv-moto-server-5.2.5";

/// The region every test talks to.
pub const REGION: &str = "us-east-1";

/// How long a server may live at most, even if the test process dies without dropping it.
const SERVER_LIFETIME_SECS: u64 = 1800;

/// How long `moto_server` may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `target/test-fixtures`, honouring `CARGO_TARGET_DIR`.
pub fn fixtures_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| xtask::project_root().join("target"));
    target.join("test-fixtures")
}

/// Build `dir` once with `build(temp_dir)`: the build happens in a fresh temporary directory beside
/// `dir`, which is renamed into place only when it is complete; a concurrent builder that loses the
/// race throws its copy away and uses the winner's.
pub fn build_fixture_once(dir: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let complete = |dir: &Path| dir.join(".complete").is_file();
    if complete(dir) {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().context("a fixture directory needs a parent")?;
    fs_err::create_dir_all(parent)?;
    let temp = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    let staging = temp.path().join("fixture");
    fs_err::create_dir(&staging)?;
    build(&staging).with_context(|| format!("building the test fixture {}", dir.display()))?;
    fs_err::write(staging.join(".complete"), "")?;
    match std::fs::rename(&staging, dir) {
        Ok(()) => Ok(dir.to_path_buf()),
        Err(_) if complete(dir) => Ok(dir.to_path_buf()),
        Err(e) => Err(e).with_context(|| format!("renaming the finished fixture into {}", dir.display())),
    }
}

/// The virtual environment holding moto, built on first use.
pub fn moto_venv() -> Result<PathBuf> {
    build_fixture_once(&fixtures_dir().join(MOTO_VENV_DIR), |dir| {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
        // Scripts get a shebang naming this temporary path, so the server is run as `python -m`.
        run(Command::new(dir.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            MOTO_REQUIREMENT,
        ]))
    })
}

/// Run `command` and fail, naming it, when it fails.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command.stdin(Stdio::null()).status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// The environment a child needs to talk to a local AWS endpoint only: fake credentials, a region,
/// no instance metadata lookups, no profile, no proxy.
pub fn fake_aws_env(command: &mut Command, endpoint: &str) {
    for name in
        ["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "proxy"]
    {
        command.env_remove(name);
    }
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint);
}

/// A running `moto_server`. Dropping it stops its process group.
pub struct MotoServer {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
    http: reqwest::blocking::Client,
}

impl MotoServer {
    /// Install moto if needed, start it on a free loopback port and wait until it answers.
    pub fn start() -> Result<MotoServer> {
        let venv = moto_venv()?;
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building an HTTP client")?;
        let mut last_error = None;
        // The port is free when chosen but another process may take it first: try a few.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .context("finding a free port on 127.0.0.1")?
                .port();
            let log = tempfile::NamedTempFile::new().context("creating moto_server's log file")?;
            let child = spawn_in_own_group(
                Command::new("timeout")
                    .args(["-s", "TERM", &SERVER_LIFETIME_SECS.to_string()])
                    .arg(venv.join("bin/python"))
                    .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log.reopen()?)
                    .stderr(log.reopen()?),
            )?;
            let mut server = MotoServer { child, port, log, http: http.clone() };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto_server did not start")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited ({status}) before answering:\n{}", self.log_tail());
            }
            if let Ok(reply) = self.http.get(format!("{}/moto-api/", self.endpoint())).send()
                && reply.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("moto_server did not answer within {READY_TIMEOUT:?}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines moto_server printed.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = self.log.reopen() {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A fake SigV4 `Authorization` header: moto reads the service from it and checks no signature.
    fn authorization(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        )
    }

    /// Call a query-protocol API (CloudFormation: `Action=DescribeStacks&...`); returns the XML body.
    pub fn query(&self, service: &str, params: &[(&str, &str)]) -> Result<String> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let reply = self
            .http
            .post(format!("{}/", self.endpoint()))
            .header("Authorization", Self::authorization(service))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .with_context(|| format!("calling {service} on moto_server"))?;
        let status = reply.status();
        let text = reply.text()?;
        if !status.is_success() {
            bail!("{service} {params:?} answered {status}: {text}");
        }
        Ok(text)
    }

    /// `GET` a REST-JSON API path (Lambda: `/2018-10-31/layers`); returns the parsed body.
    pub fn get_json(&self, service: &str, path: &str) -> Result<serde_json::Value> {
        let reply = self
            .http
            .get(format!("{}{path}", self.endpoint()))
            .header("Authorization", Self::authorization(service))
            .send()
            .with_context(|| format!("calling {service} {path} on moto_server"))?;
        let status = reply.status();
        let text = reply.text()?;
        if !status.is_success() {
            bail!("{service} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{service} {path}: not JSON: {text}"))
    }
}

fn spawn_in_own_group(command: &mut Command) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    command.process_group(0).spawn().context("starting moto_server (needs `timeout` from coreutils)")
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // The child leads its own group (process_group(0)), so its id is the group's id.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_is_built_once_and_a_failed_build_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("fixture");
        let failed = build_fixture_once(&dir, |staging| {
            fs_err::write(staging.join("half"), "")?;
            bail!("network down")
        });
        let message = format!("{:#}", failed.unwrap_err());
        assert!(message.starts_with("building the test fixture ") && message.ends_with("network down"), "{message}");
        assert!(!dir.exists());
        assert_eq!(fs_err::read_dir(parent.path()).unwrap().count(), 0, "temporary build directory left behind");

        let mut builds = 0;
        for _ in 0..2 {
            build_fixture_once(&dir, |staging| {
                builds += 1;
                Ok(fs_err::write(staging.join("made"), "yes")?)
            })
            .unwrap();
        }
        assert_eq!(builds, 1);
        assert_eq!(fs_err::read_to_string(dir.join("made")).unwrap(), "yes");
    }
}
