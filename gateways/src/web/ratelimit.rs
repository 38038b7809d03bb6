//! Per-IP token buckets (SPEC §10; off by default): `requests_per_second` sustained, `burst`
//! at once, buckets start full. The client is the peer, or — when the peer is a trusted
//! proxy — the rightmost untrusted address of `X-Forwarded-For`. `/health`, `/metrics`,
//! `/openapi.json` and `/docs` are exempt. Past 100 000 tracked clients new ones are refused;
//! buckets idle for an hour are dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use turnstone_actors::config::RateLimitConfig;
use warp::Filter;
use warp::http::StatusCode;

use std::sync::Arc;

use super::error::ApiError;
use super::{WebState, with_state};

/// Clients tracked at most.
pub const MAX_BUCKETS: usize = 100_000;
/// Buckets unused this long are dropped.
const IDLE: Duration = Duration::from_secs(3600);
/// How often idle buckets are swept.
const SWEEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<IpAddr, Bucket>,
    swept: Instant,
}

/// The limiter.
#[derive(Debug)]
pub struct RateLimiter {
    enabled: bool,
    rate: f64,
    burst: f64,
    trusted: Vec<IpNet>,
    buckets: Mutex<Buckets>,
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl RateLimiter {
    /// From `[ratelimit]`; unparsable proxy entries are reported and skipped.
    pub fn new(config: &RateLimitConfig) -> Self {
        let trusted = config
            .trusted_proxies
            .iter()
            .filter_map(|c| {
                let parsed = c
                    .parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from));
                if parsed.is_err() {
                    tracing::warn!(proxy = %c, "ignoring an unparsable trusted proxy");
                }
                parsed.ok()
            })
            .collect();
        Self {
            enabled: config.enabled,
            rate: config.requests_per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(config.burst.max(1)),
            trusted,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&canonical(ip)))
    }

    /// The client a request comes from.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let hops: Vec<IpAddr> = header
            .split(',')
            .filter_map(|h| h.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or_else(|| hops.first())
            .copied()
            .unwrap_or(peer)
    }

    /// Takes a token for `client`, or says how many seconds until one is available.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), f64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(buckets.swept) >= SWEEP {
            buckets.map.retain(|_, b| now.duration_since(b.last) < IDLE);
            buckets.swept = now;
        }
        if !buckets.map.contains_key(&client) && buckets.map.len() >= MAX_BUCKETS {
            return Err(1.0 / self.rate);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = buckets.map.entry(client).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - bucket.tokens) / rate)
        }
    }

    /// Clients tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.map.len()).unwrap_or(0)
    }
}

fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/metrics" | "/openapi.json" | "/docs")
}

/// Refuses requests over the limit with 429 and `Retry-After`.
pub fn filter<S: WebState>(
    state: Arc<S>,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::path::full()
        .and(warp::addr::remote())
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .and(with_state(state))
        .and_then(
            |path: warp::path::FullPath,
             peer: Option<SocketAddr>,
             forwarded: Option<String>,
             state: Arc<S>| async move {
                let limiter = state.rate_limiter();
                if !limiter.enabled || exempt(path.as_str()) {
                    return Ok(());
                }
                let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
                let client = limiter.client(peer, forwarded.as_deref());
                limiter.check(client, Instant::now()).map_err(|wait| {
                    state.http_metrics().ratelimit_rejected.inc();
                    let mut error =
                        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
                    error.retry_after = Some(wait);
                    warp::reject::custom(error)
                })
            },
        )
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32, trusted: &[&str]) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            enabled: true,
            requests_per_second: rate,
            burst,
            trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn buckets_start_full_refill_at_the_rate_and_say_when_to_retry() {
        let l = limiter(10.0, 20, &[]);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.check(ip, t0).is_ok());
        }
        let wait = l.check(ip, t0).unwrap_err();
        assert!((wait - 0.1).abs() < 1e-9, "{wait}");
        assert!(l.check(ip, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_millis(100)).is_err());
        assert!(
            l.check("198.51.100.8".parse().unwrap(), t0).is_ok(),
            "per IP"
        );
        // idle buckets are swept after an hour
        assert_eq!(l.tracked(), 2);
        let later = t0 + IDLE + SWEEP;
        assert!(l.check("198.51.100.9".parse().unwrap(), later).is_ok());
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let l = limiter(10.0, 20, &["10.0.0.0/8", "192.168.1.1"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            l.client(outsider, Some("1.1.1.1")),
            outsider,
            "untrusted peer: header ignored"
        );
        assert_eq!(
            l.client(proxy, Some("1.1.1.1, 203.0.113.5, 192.168.1.1")),
            "203.0.113.5".parse::<IpAddr>().unwrap(),
            "rightmost untrusted wins"
        );
        assert_eq!(l.client(proxy, Some("garbage")), proxy);
        assert_eq!(l.client(proxy, None), proxy);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            l.client(mapped, Some("::ffff:198.51.100.1")),
            "198.51.100.1".parse::<IpAddr>().unwrap(),
            "IPv4-mapped addresses are IPv4"
        );
    }

    #[test]
    fn past_the_bucket_limit_new_clients_are_refused() {
        let l = limiter(1000.0, 5, &[]);
        let t = Instant::now();
        for i in 0..MAX_BUCKETS {
            let ip = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
            assert!(l.check(ip, t).is_ok());
        }
        assert!(l.check("255.255.255.254".parse().unwrap(), t).is_err());
        assert!(
            l.check(IpAddr::from([0, 0, 0, 1]), t).is_ok(),
            "known clients go on"
        );
    }
}
