//! The target architecture and every name it goes by (Lambda, manylinux, python-build-standalone, ELF).

use std::fmt;

/// A Lambda architecture. This type alone knows the names each ecosystem uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Arch {
    /// Graviton: Lambda `arm64`, manylinux `aarch64`.
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
    /// Lambda `x86_64`, manylinux `x86_64`.
    #[value(name = "x86_64", alias = "amd64", alias = "x86-64")]
    X86_64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Arm64, Arch::X86_64];

    /// The name Lambda and serverless.yml use (`architecture: arm64`).
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The machine name in wheel platform tags and `platform_machine` (`manylinux_2_17_aarch64`).
    pub fn manylinux_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The python-build-standalone target triple (`aarch64-unknown-linux-gnu`).
    pub fn pbs_triple(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }

    /// The ELF `e_machine` value of binaries built for this architecture.
    pub(crate) fn elf_machine(self) -> u16 {
        match self {
            Arch::Arm64 => 183, // EM_AARCH64
            Arch::X86_64 => 62, // EM_X86_64
        }
    }

    /// The architecture of the machine running this build, if it is one Lambda offers.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "aarch64" => Some(Arch::Arm64),
            "x86_64" => Some(Arch::X86_64),
            _ => None,
        }
    }

    /// The directory a build for this architecture goes to, relative to the repository root.
    pub(crate) fn build_dir_name(self) -> String {
        format!("layer-build-{}", self.lambda_name())
    }

    /// The file name of the layer artifact.
    pub(crate) fn layer_zip_name(self) -> String {
        format!("python-litellm-{}.zip", self.lambda_name())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.lambda_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_ecosystem() {
        assert_eq!(Arch::Arm64.lambda_name(), "arm64");
        assert_eq!(Arch::Arm64.manylinux_name(), "aarch64");
        assert_eq!(Arch::Arm64.pbs_triple(), "aarch64-unknown-linux-gnu");
        assert_eq!(Arch::X86_64.pbs_triple(), "x86_64-unknown-linux-gnu");
        assert_eq!(Arch::X86_64.elf_machine(), 62);
        assert_eq!(Arch::Arm64.build_dir_name(), "layer-build-arm64");
        assert_eq!(Arch::X86_64.layer_zip_name(), "python-litellm-x86_64.zip");
    }
}
