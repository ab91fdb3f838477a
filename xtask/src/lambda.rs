//! What AWS Lambda fixes for this service: the Node.js runtime, where a layer is mounted, the
//! environment the layer's Python needs, and the size limits.
//!
//! Limits: <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>. Layers are
//! extracted under `/opt`: <https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html>.

use crate::python_version::PythonVersion;

/// The Lambda runtime of the service's functions and the layer's `CompatibleRuntimes`.
pub const NODE_RUNTIME: &str = "nodejs22.x";

/// Where the layer's `python/` directory is on Lambda (layers are extracted under `/opt`).
pub const PYTHON_HOME: &str = "/opt/python";

/// The most a function and all its layers may take unzipped, in MB.
pub const UNZIPPED_LIMIT_MB: f64 = 250.0;

/// The most a zip may weigh when uploaded directly (not through S3), in MB.
pub const DIRECT_UPLOAD_LIMIT_MB: f64 = 50.0;

/// The layer's interpreter on Lambda: `/opt/python/bin/python3.X`.
pub fn interpreter(python: PythonVersion) -> String {
    format!("{PYTHON_HOME}/bin/{}", python.interpreter_name())
}

/// `PYTHONPATH` on Lambda, the layer's standard library: `/opt/python/lib/python3.X`.
pub fn pythonpath(python: PythonVersion) -> String {
    format!("{PYTHON_HOME}/{}", python.stdlib_dir())
}

/// The environment every function needs to run the layer's Python: its home, its standard
/// library on the path, and LiteLLM's bundled model cost map instead of a download at import.
pub fn python_environment(python: PythonVersion) -> [(&'static str, String); 3] {
    [
        ("PYTHONHOME", PYTHON_HOME.to_string()),
        ("PYTHONPATH", pythonpath(python)),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_environment_follows_the_minor_version() {
        for (version, expected_pythonpath) in [
            ("3.11", "/opt/python/lib/python3.11"),
            ("3.12", "/opt/python/lib/python3.12"),
            ("3.13", "/opt/python/lib/python3.13"),
        ] {
            let python = version.parse().unwrap();
            assert_eq!(interpreter(python), format!("/opt/python/bin/python{version}"));
            let environment = python_environment(python);
            assert_eq!(
                environment,
                [
                    ("PYTHONHOME", "/opt/python".to_string()),
                    ("PYTHONPATH", expected_pythonpath.to_string()),
                    ("LITELLM_LOCAL_MODEL_COST_MAP", "True".to_string()),
                ]
            );
        }
    }
}
