//! The `mac` interface: HMACs with the secrets the manifest grants in
//! `[sandbox.secrets]`, by name. The connector gets MACs and yes/no
//! answers, never a key.

use crate::config::{ConfigError, SandboxSection, SecretSource};
use crate::runtime::bindings::{mac, types};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A connector's granted secrets, by name: each with its values (the first
/// signs; any verifies).
pub(crate) type Secrets = BTreeMap<String, Vec<Vec<u8>>>;

/// Reads every `[sandbox.secrets]` grant; a missing or empty one refuses
/// the load, naming it.
pub(crate) fn resolve(s: &SandboxSection, manifest_path: &Path) -> Result<Secrets, ConfigError> {
    let mut out = Secrets::new();
    for (name, grant) in &s.secrets {
        let key = format!("sandbox.secrets.{name}");
        let values: Vec<Vec<u8>> = SecretSource::read_all(
            manifest_path,
            (&format!("{key}.env"), grant.env.as_ref()),
            (&format!("{key}.file"), grant.file.as_ref()),
        )?
        .into_iter()
        .map(|(_, s)| s.into_bytes())
        .collect();
        if values.is_empty() {
            return Err(ConfigError::invalid(
                manifest_path,
                &key,
                "name the secret: `{ env = \"VAR\" }` or `{ file = \"path\" }`",
            ));
        }
        out.insert(name.clone(), values);
    }
    Ok(out)
}

/// Per-call state of the `mac` interface.
pub(crate) struct Macs {
    pub(crate) secrets: Arc<Secrets>,
}

impl Macs {
    fn values(&self, name: &str) -> Result<&[Vec<u8>], types::Error> {
        self.secrets.get(name).map(Vec::as_slice).ok_or_else(|| {
            types::Error::Invalid(format!("no secret `{name}` in [sandbox.secrets]"))
        })
    }
}

fn hmac(algorithm: mac::Algorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    let algorithm = match algorithm {
        mac::Algorithm::Sha1 => crate::mac::Algorithm::Sha1,
        mac::Algorithm::Sha256 => crate::mac::Algorithm::Sha256,
        mac::Algorithm::Sha512 => crate::mac::Algorithm::Sha512,
    };
    algorithm.mac(key, &[data])
}

impl mac::Host for Macs {
    fn sign(
        &mut self,
        secret: String,
        algorithm: mac::Algorithm,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, types::Error> {
        let values = self.values(&secret)?;
        Ok(hmac(algorithm, &values[0], &data))
    }

    fn verify(
        &mut self,
        secret: String,
        algorithm: mac::Algorithm,
        data: Vec<u8>,
        given: Vec<u8>,
    ) -> Result<bool, types::Error> {
        use subtle::ConstantTimeEq as _;
        let mut found = false;
        for key in self.values(&secret)? {
            let expected = hmac(algorithm, key, &data);
            found |= expected.len() == given.len() && bool::from(expected.ct_eq(&given));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Manifest;

    fn section(toml: &str) -> SandboxSection {
        Manifest::parse(Path::new("/nonexistent/x.toml"), toml)
            .unwrap()
            .sandbox
    }

    #[test]
    fn grants_sign_with_the_first_value_and_verify_any_in_constant_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("new.secret"), "new").unwrap();
        std::fs::write(dir.path().join("old.secret"), "old").unwrap();
        let s = section("[sandbox.secrets]\nzoom = { file = [\"new.secret\", \"old.secret\"] }\n");
        let secrets = resolve(&s, &dir.path().join("x.toml")).unwrap();
        let mut macs = Macs {
            secrets: Arc::new(secrets),
        };
        let signed = mac::Host::sign(
            &mut macs,
            "zoom".into(),
            mac::Algorithm::Sha256,
            b"t".to_vec(),
        )
        .unwrap();
        assert_eq!(signed, hmac(mac::Algorithm::Sha256, b"new", b"t"));
        for key in [&b"new"[..], b"old"] {
            let m = hmac(mac::Algorithm::Sha1, key, b"t");
            assert!(
                mac::Host::verify(
                    &mut macs,
                    "zoom".into(),
                    mac::Algorithm::Sha1,
                    b"t".to_vec(),
                    m
                )
                .unwrap()
            );
        }
        let wrong = hmac(mac::Algorithm::Sha1, b"other", b"t");
        assert!(
            !mac::Host::verify(
                &mut macs,
                "zoom".into(),
                mac::Algorithm::Sha1,
                b"t".to_vec(),
                wrong
            )
            .unwrap()
        );
        // A name the manifest does not grant.
        let err =
            mac::Host::sign(&mut macs, "slack".into(), mac::Algorithm::Sha256, vec![]).unwrap_err();
        assert!(matches!(err, types::Error::Invalid(m) if m.contains("no secret `slack`")));
    }

    #[test]
    fn a_missing_or_empty_grant_refuses_the_load_naming_it() {
        let path = Path::new("/nonexistent/x.toml");
        let err = resolve(
            &section("[sandbox.secrets]\nzoom = { file = \"missing.secret\" }\n"),
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sandbox.secrets.zoom.file"), "{err}");
        let err = resolve(&section("[sandbox.secrets]\nzoom = {}\n"), path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sandbox.secrets.zoom"), "{err}");
    }
}
