//! Self-signed certificates for trying TLS without a certificate authority
//! (`parlor gen-cert`).
//!
//! [`generate_self_signed`] makes a certificate and its private key, both PEM;
//! [`write_self_signed`] writes them to `cert.pem` and `key.pem` in a directory. The
//! server serves them with `--tls-cert`/`--tls-key`, and a client trusts the
//! certificate itself as its CA (`parlor chat --ca DIR/cert.pem`, `openssl s_client
//! -CAfile DIR/cert.pem`): no public authority vouches for it, so nobody else trusts it.
//!
//! ```
//! let pair = parlor::certs::generate_self_signed(&["localhost".to_owned()])?;
//! assert!(pair.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(pair.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
//! # Ok::<(), parlor::certs::CertError>(())
//! ```

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};

/// The names a certificate gets when none are given: what a client on this machine
/// dials (`127.0.0.1` becomes an IP address entry, which clients check for an IP).
pub const DEFAULT_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The file [`write_self_signed`] puts the certificate in.
pub const CERT_FILE: &str = "cert.pem";

/// The file [`write_self_signed`] puts the private key in.
pub const KEY_FILE: &str = "key.pem";

/// How many years a generated certificate is valid: long enough not to get in the
/// way of a test setup, short enough that a forgotten key stops working some day.
const VALID_YEARS: i16 = 5;

/// A certificate and its private key, both PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// Its private key, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl fmt::Debug for SelfSigned {
    // The key stays out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<private key>")
            .finish()
    }
}

/// Where [`write_self_signed`] wrote the certificate and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// `DIR/cert.pem`.
    pub cert: PathBuf,
    /// `DIR/key.pem`.
    pub key: PathBuf,
}

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// No name was given: a certificate must name the server.
    #[error("a certificate needs at least one name")]
    NoNames,
    /// A name is neither a DNS name nor an IP address.
    #[error("{name:?} is not a DNS name or an IP address ({reason})")]
    BadName {
        /// The name as given.
        name: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Generating the key or signing the certificate failed.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// The file exists and overwriting was not asked for.
    #[error("{} exists already; add --force to overwrite it", .0.display())]
    Exists(PathBuf),
    /// Creating the directory or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

/// Generates a new key pair (ECDSA P-256) and a certificate for it, signed by itself,
/// for the server `names`: each a DNS name (`localhost`, `chat.example.org`) or an IP
/// address (`127.0.0.1`, `::1`). It is valid from yesterday (so a client whose clock
/// is a little behind accepts it) for five years.
pub fn generate_self_signed(names: &[String]) -> Result<SelfSigned, CertError> {
    let Some(first) = names.first() else {
        return Err(CertError::NoNames);
    };
    // rcgen takes any ASCII as a DNS name; a name no client can ask for would make a
    // certificate nobody can use, so check each the way the client will.
    for name in names {
        ServerName::try_from(name.as_str()).map_err(|e| CertError::BadName {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    }
    let key = KeyPair::generate().map_err(CertError::Generate)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(CertError::Generate)?;
    // A subject of its own, from the key: a client trusting another gen-cert
    // certificate would otherwise take that one for this one's issuer by name, and
    // report a bad signature where the truth is an unknown issuer.
    let fingerprint = Sha256::digest(key.public_key_raw());
    let tag = hex::encode(&fingerprint[..6]);
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, first.as_str());
    subject.push(DnType::OrganizationName, format!("parlor gen-cert {tag}"));
    params.distinguished_name = subject;
    // A server certificate, not a CA: clients that trust it as an anchor still check
    // its names, and it cannot sign certificates for other names.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let today = jiff::Zoned::now().date();
    let yesterday = today.yesterday().unwrap_or(today);
    params.not_before = rcgen::date_time_ymd(
        i32::from(yesterday.year()),
        yesterday.month().unsigned_abs(),
        yesterday.day().unsigned_abs(),
    );
    let until = today
        .checked_add(jiff::Span::new().years(VALID_YEARS))
        .unwrap_or(today);
    params.not_after = rcgen::date_time_ymd(
        i32::from(until.year()),
        until.month().unsigned_abs(),
        until.day().unsigned_abs(),
    );
    let cert = params.self_signed(&key).map_err(CertError::Generate)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Generates a self-signed certificate for `names` and writes it to `dir/cert.pem` and
/// its key to `dir/key.pem` (readable by the owner only), creating `dir` if missing.
///
/// Unless `force`, nothing is written when either file exists: replacing a key by
/// accident would lock out every client that trusts the old certificate.
pub fn write_self_signed(
    dir: &Path,
    names: &[String],
    force: bool,
) -> Result<CertFiles, CertError> {
    let files = CertFiles {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    };
    if !force {
        for path in [&files.cert, &files.key] {
            if path.exists() {
                return Err(CertError::Exists(path.clone()));
            }
        }
    }
    let pair = generate_self_signed(names)?;
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })?;
    // The key first: a certificate without its key is useless, and a failure here
    // then leaves nothing behind that a later run would refuse to overwrite.
    write_file(&files.key, &pair.key_pem, force, 0o600)?;
    write_file(&files.cert, &pair.cert_pem, force, 0o644)?;
    Ok(files)
}

/// Writes `text` to `path` with the Unix permissions `mode` (for a new file), failing
/// if it exists unless `overwrite`.
fn write_file(path: &Path, text: &str, overwrite: bool, mode: u32) -> Result<(), CertError> {
    let mut options = OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        // Checked again here, atomically: another process may have written it since.
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let io_error = |source: io::Error| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => CertError::Exists(path.to_owned()),
        _ => io_error(e),
    })?;
    // `mode` only applies to a file being created; an overwritten key could have been
    // readable by others before.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_error)?;
    }
    file.write_all(text.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn generates_a_pem_certificate_and_key() {
        let pair = generate_self_signed(&names(&DEFAULT_NAMES)).expect("generates");
        assert!(pair.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pair.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
        // Fresh keys each time.
        let again = generate_self_signed(&names(&DEFAULT_NAMES)).expect("generates");
        assert_ne!(pair.key_pem, again.key_pem);
    }

    #[test]
    fn refuses_no_names_and_bad_names() {
        assert!(matches!(generate_self_signed(&[]), Err(CertError::NoNames)));
        match generate_self_signed(&names(&["localhost", "not a name"])) {
            Err(CertError::BadName { name, .. }) => assert_eq!(name, "not a name"),
            other => panic!("expected BadName, got {other:?}"),
        }
    }

    #[test]
    fn writes_files_and_refuses_to_overwrite_without_force() {
        let dir = std::env::temp_dir().join(format!("parlor-certs-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let out = dir.join("nested");
        let files = write_self_signed(&out, &names(&["localhost"]), false).expect("writes");
        assert_eq!(files.cert, out.join(CERT_FILE));
        let cert = fs::read_to_string(&files.cert).expect("cert written");
        let key = fs::read_to_string(&files.key).expect("key written");
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("BEGIN PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&files.key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the key is the owner's only");
        }

        match write_self_signed(&out, &names(&["localhost"]), false) {
            Err(CertError::Exists(path)) => assert_eq!(path, files.cert),
            other => panic!("expected Exists, got {other:?}"),
        }
        assert_eq!(
            fs::read_to_string(&files.key).expect("key"),
            key,
            "untouched"
        );

        write_self_signed(&out, &names(&["localhost"]), true).expect("overwrites with force");
        assert_ne!(fs::read_to_string(&files.key).expect("key"), key);
        let _ = fs::remove_dir_all(&dir);
    }
}
