//! Licenses of a shipped distribution, from its core metadata: `License-Expression` (PEP 639),
//! else the `License` field and `License ::` classifiers, as CycloneDX license choices.

use cyclonedx_bom::external_models::spdx::{SpdxExpression, SpdxIdentifier};
use cyclonedx_bom::models::license::{License, LicenseChoice};

/// The header fields of a core metadata file
/// (<https://packaging.python.org/en/latest/specifications/core-metadata/>): RFC 822 style
/// `Name: value` lines, continuation lines start with whitespace, the body follows a blank line.
pub(crate) struct CoreMetadata {
    fields: Vec<(String, String)>,
}

impl CoreMetadata {
    pub(crate) fn parse(text: &str) -> CoreMetadata {
        CoreMetadata { fields: crate::packaging::core_metadata::header_fields(text) }
    }

    fn all<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s str> + use<'s, 'n> {
        self.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }
}

/// Licenses as CycloneDX license choices: `License-Expression` (PEP 639) when present, else the
/// `License` field and `License ::` classifiers. Valid SPDX ids and expressions are written as
/// such; anything else as a license name.
pub(crate) fn licenses_from_metadata(metadata: &CoreMetadata) -> Vec<LicenseChoice> {
    if let Some(expression) = metadata.first("License-Expression").filter(|e| !e.is_empty()) {
        return vec![license_choice(expression)];
    }
    let mut choices: Vec<LicenseChoice> = Vec::new();
    let mut push = |choice: LicenseChoice| {
        if !choices.contains(&choice) {
            choices.push(choice);
        }
    };
    if let Some(license) = metadata.first("License") {
        // The field often holds the whole license text; its first line names it.
        let first_line = license.lines().next().unwrap_or("").trim();
        if !first_line.is_empty() && !first_line.eq_ignore_ascii_case("UNKNOWN") {
            let short: String = first_line.chars().take(120).collect();
            push(license_choice(&short));
        }
    }
    for classifier in metadata.all("Classifier") {
        let Some(rest) = classifier.strip_prefix("License ::") else { continue };
        let last = rest.rsplit("::").next().unwrap_or(rest).trim();
        if last == "OSI Approved" || last.is_empty() {
            continue;
        }
        match classifier_spdx_id(last) {
            Some(id) => push(LicenseChoice::License(License::license_id(id))),
            None => push(LicenseChoice::License(License::named_license(last))),
        }
    }
    // CycloneDX allows either licenses or one expression, never both: an expression in the
    // `License` field (e.g. "MIT OR Apache-2.0") says it all.
    if let Some(expression) = choices.iter().find(|c| matches!(c, LicenseChoice::Expression(_))) {
        return vec![expression.clone()];
    }
    choices
}

/// One license string: an SPDX id, else an SPDX expression, else a name.
fn license_choice(text: &str) -> LicenseChoice {
    if SpdxIdentifier::try_from(text.to_string()).is_ok() {
        return LicenseChoice::License(License::license_id(text));
    }
    if text.contains(' ') && SpdxExpression::try_from(text.to_string()).is_ok() {
        return LicenseChoice::Expression(SpdxExpression::new(text));
    }
    LicenseChoice::License(License::named_license(text))
}

/// Trove license classifiers that name exactly one SPDX license
/// (<https://pypi.org/classifiers/>). Ambiguous ones (`BSD License`, `Apache Software License`)
/// stay names.
fn classifier_spdx_id(classifier: &str) -> Option<&'static str> {
    Some(match classifier {
        "MIT License" => "MIT",
        "MIT No Attribution License (MIT-0)" => "MIT-0",
        "ISC License (ISCL)" => "ISC",
        "Python Software Foundation License" => "PSF-2.0",
        "Mozilla Public License 2.0 (MPL 2.0)" => "MPL-2.0",
        "The Unlicense (Unlicense)" => "Unlicense",
        "Zero-Clause BSD (0BSD)" => "0BSD",
        "Boost Software License 1.0 (BSL-1.0)" => "BSL-1.0",
        "zlib/libpng License" => "Zlib",
        "GNU Lesser General Public License v2 or later (LGPLv2+)" => "LGPL-2.0-or-later",
        "GNU Lesser General Public License v3 (LGPLv3)" => "LGPL-3.0-only",
        "GNU Lesser General Public License v3 or later (LGPLv3+)" => "LGPL-3.0-or-later",
        "GNU General Public License v2 (GPLv2)" => "GPL-2.0-only",
        "GNU General Public License v3 (GPLv3)" => "GPL-3.0-only",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expression_in_the_license_field_is_never_mixed_with_classifiers() {
        let metadata = CoreMetadata::parse(
            "Metadata-Version: 2.1\nName: x\nVersion: 1\nLicense: MIT OR Apache-2.0\n\
             Classifier: License :: OSI Approved :: MIT License\n",
        );
        let choices = licenses_from_metadata(&metadata);
        assert_eq!(choices.len(), 1, "{choices:?}");
        assert!(
            matches!(&choices[0], LicenseChoice::Expression(e) if e.to_string() == "MIT OR Apache-2.0"),
            "{choices:?}"
        );
    }
}
