//! End-to-end tests of `cargo xtask lock` against a fixture index on 127.0.0.1, plus one against
//! the real index (`real_index` in its name, so it can be filtered out).

use std::sync::{Arc, Mutex};

use crate::support::lock_fixture::{self, Index, Mode, Project, Wheel, packages, serve, version_of};

/// An index exercising tags, markers, extras, yanked files and requires-python.
fn rich_index() -> Index {
    let mut index = Index::default();
    index.wheel(Wheel::new("app", "1.0").requires(&[
        "dep-a>=1",
        "armonly; platform_machine == 'aarch64'",
        "winonly; sys_platform == 'win32'",
        "httpx[http2]",
        "old-python-only; python_version < '3.10'",
    ]));
    index.wheel(Wheel::new("dep-a", "1.0"));
    // 2.0: platform wheels; the manylinux_2_35 and musllinux ones must never be chosen.
    index.wheel(Wheel::new("dep-a", "2.0").tags("cp311-cp311-manylinux_2_28_aarch64"));
    index.wheel(Wheel::new("dep-a", "2.0").tags("cp311-cp311-manylinux_2_35_aarch64"));
    index.wheel(Wheel::new("dep-a", "2.0").tags("cp311-cp311-musllinux_1_2_aarch64"));
    index.wheel(Wheel::new("dep-a", "2.0").tags("cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64"));
    index.wheel(Wheel::new("dep-a", "2.0").tags("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"));
    index.wheel(Wheel::new("dep-a", "2.0").tags("py3-none-any"));
    index.wheel(Wheel::new("dep-a", "3.0")).yanked = true;
    index.wheel(Wheel::new("dep-a", "4.0")).requires_python = Some(">=3.12".into());
    index.sdist("dep-a", "5.0");
    index.wheel(Wheel::new("armonly", "1.0"));
    index.wheel(Wheel::new("winonly", "1.0"));
    index.wheel(Wheel::new("old-python-only", "1.0"));
    index.wheel(Wheel::new("httpx", "1.0").extras(&["http2"]).requires(&["idna", "h2>=3; extra == 'http2'"]));
    index.wheel(Wheel::new("idna", "3.0"));
    index.wheel(Wheel::new("h2", "4.0").requires(&["hpack"]));
    index.wheel(Wheel::new("hpack", "4.0"));
    index
}

fn wheel_names(lock: &str, name: &str) -> Vec<String> {
    let parsed = xtask::packaging::pylock::Pylock::parse(lock, std::path::Path::new("pylock.toml")).unwrap();
    parsed.packages.iter().filter(|p| p.name == name).flat_map(|p| p.wheels.iter().map(|w| w.name.clone())).collect()
}

#[test]
fn lock_selects_tags_markers_extras_and_skips_yanked_and_requires_python() {
    let index = Arc::new(Mutex::new(rich_index()));
    let server = serve(index, Mode::Normal);
    let project = Project::new(&["app"], &[]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(run.success, "{}", run.stderr);
    let lock = project.lock_text();
    // Newest non-yanked version whose requires-python fits 3.11.14 and that has wheels.
    assert_eq!(version_of(&lock, "dep-a").as_deref(), Some("2.0"));
    // Best tag per arch: cp311 manylinux_2_28 on arm64 (not 2_35, not musl); cp311 over abi3 on x86_64.
    assert_eq!(
        wheel_names(&lock, "dep-a"),
        [
            "dep_a-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "dep_a-2.0-cp311-cp311-manylinux_2_28_aarch64.whl"
        ]
    );
    let all = packages(&lock);
    let names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["app", "armonly", "dep-a", "h2", "hpack", "httpx", "idna"]);
    let armonly = all.iter().find(|(n, _, _)| n == "armonly").unwrap();
    assert_eq!(armonly.2.as_deref(), Some("platform_machine == 'aarch64'"));
    assert!(all.iter().filter(|(n, _, _)| n != "armonly").all(|(_, _, m)| m.is_none()));
    assert!(
        lock.contains("dependencies = [{ name = \"armonly\" }, { name = \"dep-a\" }, { name = \"httpx\" }]"),
        "{lock}"
    );
    assert!(lock.contains("lock-version = \"1.0\""));
    assert!(lock.contains("requires-python = \"==3.11.*\""));
    assert!(
        run.stderr.contains("==> resolving for arm64") && run.stderr.contains("locked 7 packages"),
        "{}",
        run.stderr
    );
}

#[test]
fn two_locks_are_identical_and_check_follows_layer_toml() {
    let server = serve(Arc::new(Mutex::new(rich_index())), Mode::Normal);
    let project = Project::new(&["app"], &[]);
    assert!(project.lock(&server.url("/simple"), &[]).success);
    let first = project.lock_text();
    // A fresh cache and no previous lock: byte-identical output.
    let other = Project::new(&["app"], &[]);
    assert!(other.lock(&server.url("/simple"), &[]).success);
    assert_eq!(first, other.lock_text());
    // --check passes without the network (the server is gone).
    let url = server.url("/simple");
    drop(server);
    let check = project.lock(&url, &["--check"]);
    assert!(check.success, "{}", check.stderr);
    project.write_spec(&["app", "idna"], &["winonly"]);
    let check = project.lock(&url, &["--check"]);
    assert!(!check.success);
    assert!(check.stderr.contains("pylock.toml is out of date"), "{}", check.stderr);
    assert!(
        check.stderr.contains("packages.requirements: the lock has [\"app\"], now [\"app\", \"idna\"]"),
        "{}",
        check.stderr
    );
    assert!(check.stderr.contains("packages.exclude"), "{}", check.stderr);
    let other_index = project.lock("http://127.0.0.1:9/other", &["--check"]);
    assert!(other_index.stderr.contains("index url"), "{}", other_index.stderr);
}

/// (name, `[packages.tool.litellm-layer] excluded`) of every locked package.
fn exclusion_marks(lock: &str) -> Vec<(String, Option<String>)> {
    let parsed = xtask::packaging::pylock::Pylock::parse(lock, std::path::Path::new("pylock.toml")).unwrap();
    parsed.packages.iter().map(|p| (p.name.clone(), p.excluded().map(str::to_string))).collect()
}

#[test]
fn excluded_packages_stay_locked_and_marked_so_pip_and_uv_can_install_the_lock() {
    let server = serve(Arc::new(Mutex::new(rich_index())), Mode::Normal);
    let project = Project::new(&["app"], &["HTTPX"]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(run.success, "{}", run.stderr);
    let lock = project.lock_text();
    // httpx and what only it needs (idna, h2 through its http2 extra, hpack) are pinned and hashed
    // like everything else, and marked as left out of the layer.
    let excluded = |why: &str| Some(why.to_string());
    assert_eq!(
        exclusion_marks(&lock),
        [
            ("app".to_string(), None),
            ("armonly".to_string(), None),
            ("dep-a".to_string(), None),
            ("h2".to_string(), excluded("needed only by excluded httpx")),
            ("hpack".to_string(), excluded("needed only by excluded httpx")),
            ("httpx".to_string(), excluded("in [packages] exclude of layer.toml")),
            ("idna".to_string(), excluded("needed only by excluded httpx")),
        ]
    );
    assert!(lock.contains("exclude = [\"httpx\"]"), "{lock}");
    assert!(
        lock.contains("\n[packages.tool.litellm-layer]\nexcluded = \"in [packages] exclude of layer.toml\"\n"),
        "{lock}"
    );
    assert!(
        run.stderr.contains(
            "httpx 1.0 is locked (so pip and uv can install the lock) but the layer leaves it out: in [packages] \
             exclude of layer.toml"
        ),
        "{}",
        run.stderr
    );
    let check = project.lock(&server.url("/simple"), &["--check"]);
    assert!(check.success, "{}", check.stderr);

    // A mark removed by hand (or a lock from before marks) is out of date.
    let edited =
        lock.replacen("\n[packages.tool.litellm-layer]\nexcluded = \"in [packages] exclude of layer.toml\"\n", "\n", 1);
    std::fs::write(project.lock_path(), edited).unwrap();
    let check = project.lock(&server.url("/simple"), &["--check"]);
    assert!(!check.success);
    assert!(
        check.stderr.contains(
            "  packages marked excluded: the lock has [\"h2 (needed only by excluded httpx)\", \"hpack (needed only by \
             excluded httpx)\", \"idna (needed only by excluded httpx)\"], now [\"h2 (needed only by excluded httpx)\", \
             \"hpack (needed only by excluded httpx)\", \"httpx (in [packages] exclude of layer.toml)\", \"idna (needed \
             only by excluded httpx)\"]\nrun `cargo xtask lock` to update it"
        ),
        "{}",
        check.stderr
    );

    // A lock from before excluded packages were pinned (format 1, no `format` key) is out of date.
    assert!(lock.contains("\nformat = 2\n"), "{lock}");
    std::fs::write(project.lock_path(), lock.replace("\nformat = 2\n", "\n")).unwrap();
    let check = project.lock(&server.url("/simple"), &["--check"]);
    assert!(!check.success);
    assert!(
        check.stderr.contains(
            "is out of date:\n  lock format (2 pins excluded packages, so that pip and uv can install the lock): the \
             lock has 1, now 2\nrun `cargo xtask lock` to update it"
        ),
        "{}",
        check.stderr
    );
}

#[test]
fn an_exclusion_that_cannot_be_locked_is_refused_with_the_reason() {
    // The excluded package has no wheel for Lambda: the lock could not pin it, so pip and uv could
    // not install the lock, and the exclusion is refused.
    let mut index = Index::default();
    index.wheel(Wheel::new("app", "1.0").requires(&["winonly>=1"]));
    index.wheel(Wheel::new("winonly", "1.0").tags("cp311-cp311-win_amd64"));
    let server = serve(Arc::new(Mutex::new(index)), Mode::Normal);
    let project = Project::new(&["app"], &["winonly"]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("no installable version of winonly for Lambda arm64"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "hint: winonly is in [packages] exclude of layer.toml, but the lock still pins excluded packages so that \
             pip and uv can install it, and winonly has no wheel for this platform: this exclusion cannot be kept. \
             Pin a version of the package that requires winonly which does not need it, or remove that requirement"
        ),
        "{}",
        run.stderr
    );
    assert!(!project.lock_path().exists(), "nothing is written on failure");
}

#[test]
fn sdist_only_package_is_a_clear_error() {
    let mut index = Index::default();
    index.wheel(Wheel::new("app", "1.0").requires(&["onlysdist>=1"]));
    index.sdist("onlysdist", "1.0");
    index.wheel(Wheel::new("onlysdist", "0.9").tags("cp311-cp311-win_amd64"));
    let server = serve(Arc::new(Mutex::new(index)), Mode::Normal);
    let project = Project::new(&["app"], &[]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("no installable version of onlysdist for Lambda arm64"), "{}", run.stderr);
    assert!(run.stderr.contains("required by app 1.0 (onlysdist>=1)"), "{}", run.stderr);
    assert!(run.stderr.contains("onlysdist-1.0.tar.gz (source distribution, never built)"), "{}", run.stderr);
    assert!(run.stderr.contains("onlysdist-0.9-cp311-cp311-win_amd64.whl (no compatible tag)"), "{}", run.stderr);
    assert!(!project.lock_path().exists(), "nothing is written on failure");
}

#[test]
fn conflict_is_explained() {
    let mut index = Index::default();
    index.wheel(Wheel::new("app", "1.0").requires(&["shared>=2", "other"]));
    index.wheel(Wheel::new("other", "1.0").requires(&["shared<2"]));
    index.wheel(Wheel::new("shared", "1.0"));
    index.wheel(Wheel::new("shared", "2.0"));
    let server = serve(Arc::new(Mutex::new(index)), Mode::Normal);
    let project = Project::new(&["app"], &[]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    let err = &run.stderr;
    assert!(err.contains("cannot resolve the requirements of layer.toml for Lambda arm64"), "{err}");
    assert!(err.contains("Because other depends on shared <2 and app 1.0 depends on other"), "{err}");
    assert!(err.contains("the requirements of layer.toml cannot all be met"), "{err}");
    assert!(err.contains("app 1.0 depends on shared >=2"), "{err}");
    assert!(err.contains("shared: versions with a wheel for arm64: 2.0, 1.0"), "{err}");
}

#[test]
fn index_errors_name_the_package_and_url() {
    let mut index = Index::default();
    index.wheel(Wheel::new("app", "1.0").requires(&["broken", "missing-pkg"]));
    index.malformed.push("broken".into());
    let server = serve(Arc::new(Mutex::new(index.clone())), Mode::Normal);
    let project = Project::new(&["app"], &[]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("malformed index page for package \"broken\" at http://127.0.0.1:"), "{}", run.stderr);
    assert!(run.stderr.contains("invalid JSON"), "{}", run.stderr);

    index.malformed.clear();
    index.wheel(Wheel::new("broken", "1.0"));
    let server = serve(Arc::new(Mutex::new(index)), Mode::Normal);
    index_missing(&server);

    let html = serve(Arc::new(Mutex::new(rich_index())), Mode::Html);
    let run = Project::new(&["app"], &[]).lock(&html.url("/simple"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("answered \"text/html\""), "{}", run.stderr);
    assert!(run.stderr.contains("this index does not speak PEP 691"), "{}", run.stderr);
}

fn index_missing(server: &crate::support::TestServer) {
    let run = Project::new(&["app"], &[]).lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("package \"missing-pkg\" was not found on the index"), "{}", run.stderr);
    assert!(run.stderr.contains("it is required by app 1.0 (missing-pkg)"), "{}", run.stderr);
}

#[test]
fn files_without_sha256_are_skipped_and_an_error_when_nothing_is_left() {
    let mut index = Index::default();
    index.wheel(Wheel::new("app", "1.0").requires(&["hashless"]));
    index.wheel(Wheel::new("hashless", "0.9"));
    index.wheel(Wheel::new("hashless", "1.0")).without_sha256 = true;
    let shared = Arc::new(Mutex::new(index));
    let server = serve(shared.clone(), Mode::Normal);
    let project = Project::new(&["app"], &[]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(version_of(&project.lock_text(), "hashless").as_deref(), Some("0.9"));

    shared.lock().unwrap().projects.get_mut("hashless").unwrap().iter_mut().for_each(|f| f.without_sha256 = true);
    let run = Project::new(&["app"], &[]).lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("no installable version of hashless"), "{}", run.stderr);
    assert!(run.stderr.contains("hashless-1.0-py3-none-any.whl (the index gave no sha256)"), "{}", run.stderr);
}

#[test]
fn credentials_never_reach_the_lock_or_the_output() {
    let mut index = rich_index();
    index.wheel(Wheel::new("app2", "1.0").requires(&["missing-thing"]));
    let server = serve(Arc::new(Mutex::new(index)), Mode::Normal);
    let url = server.url("/simple").replace("http://", "http://alice:s3cret-token@");
    let project = Project::new(&["app"], &[]);
    let run = project.lock(&url, &[]);
    assert!(run.success, "{}", run.stderr);
    let lock = project.lock_text();
    for text in [&lock, &run.stderr, &run.stdout] {
        assert!(!text.contains("s3cret-token") && !text.contains("alice"), "{text}");
    }
    assert!(lock.contains(&format!("index-url = \"{}\"", server.url("/simple"))), "{lock}");
    // The requests did carry the credentials.
    assert!(server.requests().iter().all(|r| r.header("authorization").is_some()));
    // Error paths too.
    let failing = Project::new(&["app2"], &[]).lock(&url, &[]);
    assert!(!failing.success);
    assert!(failing.stderr.contains("missing-thing") && !failing.stderr.contains("s3cret-token"), "{}", failing.stderr);
}

#[test]
fn metadata_comes_from_range_requests_or_the_whole_wheel() {
    let server = serve(Arc::new(Mutex::new(rich_index())), Mode::Normal);
    let project = Project::new(&["app"], &[]);
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(run.success, "{}", run.stderr);
    let file_requests: Vec<_> = server.requests().into_iter().filter(|r| r.path.starts_with("/files/")).collect();
    assert!(!file_requests.is_empty());
    assert!(file_requests.iter().all(|r| r.header("range").is_some()), "only range requests: {file_requests:?}");
    assert!(run.stderr.contains("from range requests"), "{}", run.stderr);

    // A server without range support: whole wheels, hash-checked and kept in the download cache.
    let no_ranges = serve(Arc::new(Mutex::new(rich_index())), Mode::NoRanges);
    let other = Project::new(&["app"], &[]);
    let run = other.lock(&no_ranges.url("/simple"), &[]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("from whole wheel"), "{}", run.stderr);
    assert_eq!(project.lock_text().replace(&server.url(""), "X"), other.lock_text().replace(&no_ranges.url(""), "X"));
    let blobs = walkdir::WalkDir::new(other.cache().join("sha256"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count();
    assert!(blobs >= 7, "{blobs} wheels cached");
}

#[test]
fn existing_lock_is_preferred_and_yanked_pins_may_stay() {
    let shared = Arc::new(Mutex::new(rich_index()));
    let server = serve(shared.clone(), Mode::Normal);
    let project = Project::new(&["app"], &[]);
    assert!(project.lock(&server.url("/simple"), &[]).success);
    // A newer idna appears and dep-a 2.0 gets yanked: re-locking keeps both pins.
    {
        let mut index = shared.lock().unwrap();
        index.wheel(Wheel::new("idna", "3.1"));
        index
            .projects
            .get_mut("dep-a")
            .unwrap()
            .iter_mut()
            .filter(|f| f.filename.contains("-2.0-"))
            .for_each(|f| f.yanked = true);
    }
    let run = project.lock(&server.url("/simple"), &[]);
    assert!(run.success, "{}", run.stderr);
    let lock = project.lock_text();
    assert_eq!(version_of(&lock, "idna").as_deref(), Some("3.0"));
    assert_eq!(version_of(&lock, "dep-a").as_deref(), Some("2.0"));
    // The yanked pin that stays is reported (PEP 592), once.
    let yanked = "dep-a 2.0 is yanked on the index; it is used because it is pinned or already locked. Pin another \
                  version, or run `cargo xtask lock --upgrade-package dep-a`";
    assert_eq!(run.stderr.matches(yanked).count(), 1, "{}", run.stderr);
    // --upgrade-package moves only that package.
    let run = project.lock(&server.url("/simple"), &["--upgrade-package", "IDNA"]);
    assert!(run.success, "{}", run.stderr);
    let lock = project.lock_text();
    assert_eq!(version_of(&lock, "idna").as_deref(), Some("3.1"));
    assert_eq!(version_of(&lock, "dep-a").as_deref(), Some("2.0"));
    // --upgrade drops the yanked pin.
    let run = project.lock(&server.url("/simple"), &["--upgrade"]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(version_of(&project.lock_text(), "dep-a").as_deref(), Some("1.0"));
}

#[test]
fn compromised_litellm_is_refused() {
    let mut index = Index::default();
    for version in ["1.82.6", "1.82.7", "1.82.8"] {
        index.wheel(Wheel::new("litellm", version));
    }
    let server = serve(Arc::new(Mutex::new(index)), Mode::Normal);
    let pinned = Project::new(&["litellm==1.82.8"], &[]);
    let run = pinned.lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("refusing litellm==1.82.8: litellm 1.82.8 is a known-compromised release"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("credential-stealing .pth"), "{}", run.stderr);
    let loose = Project::new(&["litellm>=1.82"], &[]);
    let run = loose.lock(&server.url("/simple"), &[]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(version_of(&loose.lock_text(), "litellm").as_deref(), Some("1.82.6"));
    let only_bad = Project::new(&["litellm>=1.82.7"], &[]);
    let run = only_bad.lock(&server.url("/simple"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("hijacked maintainer account"), "{}", run.stderr);
}

/// Resolves the committed layer.toml against the real index and compares with the committed lock.
#[test]
fn real_index_reproduces_the_committed_lock() {
    let root = xtask::project_root();
    let committed = root.join("litellm-layer/pylock.toml");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("pylock.toml");
    // Start from the committed lock, as a user re-running `cargo xtask lock` does.
    fs_err::copy(&committed, &output).unwrap();
    let spec = root.join("litellm-layer/layer.toml");
    let run = lock_fixture::run_xtask(&spec, &dir.path().join("cache"), "", &["--output", output.to_str().unwrap()]);
    assert!(run.success, "{}", run.stderr);
    let fresh = fs_err::read_to_string(&output).unwrap();
    assert_eq!(fresh, fs_err::read_to_string(&committed).unwrap(), "run `cargo xtask lock` and commit the result");
    assert_eq!(version_of(&fresh, "litellm").as_deref(), Some("1.78.7"));
    let check = lock_fixture::run_xtask(&spec, &dir.path().join("cache"), "", &["--check"]);
    assert!(check.success, "{}", check.stderr);
}
