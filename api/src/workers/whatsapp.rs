//! The WhatsApp-like HTTP gateway adapter of the outbox sender: one POST
//! per attempt to a configured URL (`kedai serve --whatsapp-url`), shaped
//! like the WhatsApp Cloud API's text message, plus kedai's ids:
//!
//! ```json
//! {"messaging_product": "whatsapp", "recipient_type": "individual",
//!  "to": "6281234567890", "type": "text", "text": {"body": "Halo Budi, ..."},
//!  "message_id": "<kedai's message id>", "shop_id": "<shop id>"}
//! ```
//!
//! Headers: `Content-Type: application/json`, `Idempotency-Key: <message
//! id>` (the same on every attempt, so the gateway can drop a repeat), and
//! `Authorization: Bearer <token>` when a token is configured.
//!
//! Answers: 2xx is sent (the gateway's id is read from `messages[0].id`
//! or `id` in a JSON answer, if there); 408, 425, 429 and 5xx, timeouts and
//! connection failures are retried; anything else (4xx, a redirect) is a
//! refusal, not retried. Connect and whole-request timeouts bound each
//! attempt. This build's HTTP client speaks plain HTTP only: an `https`
//! gateway is reached through a TLS-terminating proxy on the same host.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::outbox::{MessageSender, OutboundMessage, SendResult};

/// Longest part of a gateway's answer kept (for the failure reason and the
/// gateway's id).
const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Longest gateway message id kept.
const GATEWAY_ID_LEN_MAX: usize = 200;

/// Where and how to reach the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsappConfig {
    /// `http://host:port/path` the messages are POSTed to.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` if set.
    pub token: Option<String>,
    pub connect_timeout: Duration,
    /// The whole attempt: connect, send, answer.
    pub request_timeout: Duration,
}

impl WhatsappConfig {
    /// The gateway at `url` with the default timeouts (5 s to connect,
    /// 15 s in all).
    pub fn new(url: impl Into<String>) -> Self {
        WhatsappConfig {
            url: url.into(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the WhatsApp gateway URL {url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error(
        "the WhatsApp gateway URL {0:?} must start with http:// (this build's client has no TLS; put a TLS-terminating proxy on the same host in front of an https gateway)"
    )]
    Scheme(String),
    #[error("the WhatsApp gateway token must be printable ASCII without spaces")]
    Token,
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Sends messages to a WhatsApp-like HTTP gateway.
#[derive(Debug, Clone)]
pub struct WhatsappSender {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<String>,
}

impl WhatsappSender {
    pub fn new(config: &WhatsappConfig) -> Result<WhatsappSender, ConfigError> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| ConfigError::NotAUrl {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        if url.scheme() != "http" || url.host_str().is_none() {
            return Err(ConfigError::Scheme(config.url.clone()));
        }
        if let Some(t) = &config.token
            && (t.is_empty() || !t.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(ConfigError::Token);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kedai/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(WhatsappSender {
            client,
            url,
            token: config.token.clone(),
        })
    }

    /// The JSON body of a message.
    pub fn body(m: &OutboundMessage) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": m.to,
            "type": "text",
            "text": {"body": m.text},
            "message_id": m.message_id,
            "shop_id": m.shop.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl MessageSender for WhatsappSender {
    async fn send(&self, m: &OutboundMessage) -> SendResult {
        let mut request = self
            .client
            .post(self.url.clone())
            .header("idempotency-key", m.message_id.to_string())
            .json(&WhatsappSender::body(m));
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return SendResult::Reject {
                    reason: format!("the request could not be built: {e}"),
                };
            }
            Err(e) => {
                return SendResult::Retry {
                    reason: transport(&e),
                };
            }
        };
        let status = response.status();
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if answer.len() < ANSWER_BYTES_MAX => {
                    let room = ANSWER_BYTES_MAX - answer.len();
                    answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(Some(_)) | Ok(None) => break,
                Err(e) if status.is_success() => {
                    // Accepted: the answer's body is a courtesy.
                    tracing::debug!(error = %e, "reading a gateway's answer");
                    break;
                }
                Err(e) => {
                    return SendResult::Retry {
                        reason: transport(&e),
                    };
                }
            }
        }
        classify(status, &answer)
    }
}

/// An attempt's outcome from the gateway's answer.
pub fn classify(status: StatusCode, answer: &[u8]) -> SendResult {
    if status.is_success() {
        return SendResult::Sent {
            gateway_message_id: gateway_id(answer),
        };
    }
    let text: String = String::from_utf8_lossy(answer).chars().take(200).collect();
    let reason = format!("HTTP {}: {}", status.as_u16(), text.trim());
    let retry = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
    if retry {
        SendResult::Retry { reason }
    } else {
        SendResult::Reject { reason }
    }
}

fn gateway_id(answer: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let id = v
        .pointer("/messages/0/id")
        .or_else(|| v.get("id"))?
        .as_str()?;
    (!id.is_empty() && id.len() <= GATEWAY_ID_LEN_MAX).then(|| id.to_owned())
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        format!("transport error: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sent_retried_or_refused() {
        let sent = classify(
            StatusCode::OK,
            br#"{"messaging_product":"whatsapp","messages":[{"id":"wamid.HBgM"}]}"#,
        );
        assert_eq!(
            sent,
            SendResult::Sent {
                gateway_message_id: Some("wamid.HBgM".into())
            }
        );
        assert_eq!(
            classify(StatusCode::ACCEPTED, b"ok"),
            SendResult::Sent {
                gateway_message_id: None
            }
        );
        for code in [500, 502, 503, 408, 425, 429] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(classify(status, b"busy"), SendResult::Retry { reason } if reason == format!("HTTP {code}: busy"))
            );
        }
        for code in [400, 401, 404, 301] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(matches!(classify(status, b""), SendResult::Reject { .. }));
        }
    }

    #[test]
    fn only_plain_http_gateways_are_accepted() {
        assert!(WhatsappSender::new(&WhatsappConfig::new("http://127.0.0.1:9/send")).is_ok());
        for bad in [
            "https://127.0.0.1/send",
            "ftp://x/y",
            "not a url",
            "127.0.0.1:80",
        ] {
            assert!(
                WhatsappSender::new(&WhatsappConfig::new(bad)).is_err(),
                "{bad}"
            );
        }
        let mut spaced = WhatsappConfig::new("http://127.0.0.1:9/send");
        spaced.token = Some("a b".into());
        assert!(matches!(
            WhatsappSender::new(&spaced),
            Err(ConfigError::Token)
        ));
    }
}
