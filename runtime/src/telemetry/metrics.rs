//! Prometheus text exposition.

use prometheus_client::registry::Registry;

/// The content type of [`encode_text`]'s output (Prometheus text format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric in `registry` in the Prometheus text format.
pub fn encode_text(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}
