//! Signing deliveries and the headers that carry the signature.
//!
//! `Kedai-Signature: v1=<hex>` where `<hex>` is HMAC-SHA256, keyed with
//! the subscription's secret (its bytes as given), over
//! `<Kedai-Timestamp>.<body>`: the timestamp header's text (Unix seconds),
//! a full stop, and the body's exact bytes. [`verify`] is the check a
//! receiver makes; the README shows it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The delivery's id: the same on every attempt and every redelivery of
/// one event to one subscription.
pub const DELIVERY_ID: &str = "kedai-delivery-id";
/// The id of the event delivered.
pub const EVENT_ID: &str = "kedai-event-id";
/// The trigger (`order_paid`, ...).
pub const TRIGGER: &str = "kedai-trigger";
/// When the attempt was signed, in Unix seconds.
pub const TIMESTAMP: &str = "kedai-timestamp";
/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE: &str = "kedai-signature";
/// Which attempt this is (1 for the first).
pub const ATTEMPT: &str = "kedai-attempt";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Kedai-Signature` value for a body signed at `timestamp`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a delivery does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is not v1=<64 hex digits>")]
    Malformed,
    #[error("the signature does not match the body and timestamp")]
    Mismatch,
    #[error("the timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("the timestamp is {0} s away from now, more than the tolerance")]
    Stale(i64),
}

/// The receiver's check: the signature matches (compared in constant
/// time) and the timestamp is within `tolerance_secs` of `now_secs`
/// (rejects replays of old deliveries).
pub fn verify(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let hex_sig = signature_header
        .strip_prefix("v1=")
        .ok_or(VerifyError::Malformed)?;
    let bytes = hex::decode(hex_sig).map_err(|_| VerifyError::Malformed)?;
    if bytes.len() != 32 {
        return Err(VerifyError::Malformed);
    }
    mac(secret, timestamp, body)
        .verify_slice(&bytes)
        .map_err(|_| VerifyError::Mismatch)?;
    let t: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let skew = (now_secs - t).abs();
    if skew > tolerance_secs {
        return Err(VerifyError::Stale(skew));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let secret = "whsec_test_secret_1234";
        let body = br#"{"trigger":"order_paid"}"#;
        let sig = signature(secret, "1734000000", body);
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert_eq!(
            verify(secret, "1734000000", body, &sig, 1734000100, 300),
            Ok(())
        );
        assert_eq!(
            verify(
                "whsec_other_secret_12",
                "1734000000",
                body,
                &sig,
                1734000000,
                300
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, "1734000001", body, &sig, 1734000000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, "1734000000", b"{}", &sig, 1734000000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, "1734000000", body, &sig, 1734001000, 300),
            Err(VerifyError::Stale(1000))
        );
        assert_eq!(
            verify(secret, "1734000000", body, "sha256=00", 0, 300),
            Err(VerifyError::Malformed)
        );
    }

    /// The HMAC is the standard one (RFC 4231, test case 2).
    #[test]
    fn hmac_sha256_matches_the_rfc_vector() {
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
