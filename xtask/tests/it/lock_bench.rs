//! Runs the lock benchmark (ignored by default: it installs uv and takes minutes).
//! `XTASK_BENCH_BIN=target/release/xtask cargo test -p xtask --test it lock_bench -- --ignored --nocapture`

#[test]
#[ignore = "benchmark: installs uv from PyPI and runs for minutes"]
fn lock_benchmark() {
    let bin =
        std::env::var_os("XTASK_BENCH_BIN").map(std::path::PathBuf::from).unwrap_or(env!("CARGO_BIN_EXE_xtask").into());
    let root = xtask::project_root();
    let runs = std::env::var("XTASK_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let work = std::env::temp_dir().join("xtask-lock-bench");
    let table = xtask::bench::lock::bench_lock(&bin, &root.join("litellm-layer/layer.toml"), &work, runs).unwrap();
    println!("{table}");
}
