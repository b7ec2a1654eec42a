//! `[audit]`, the rate limits of `[limits]` and `[[tenants]]` → validated
//! settings.

use std::num::NonZeroU32;
use std::path::PathBuf;

use super::check::join_index;
use super::convert::Converter;
use super::convert::check_url;
use super::model::{AuditConfig, AuditPath, Fsync, LimitRule, Rate, RateLimits, TelemetryConfig};
use super::raw::{RawAudit, RawFsync, RawLimitRule, RawRate, RawTelemetry};

impl Converter<'_> {
    pub(super) fn audit(&mut self, raw: RawAudit) -> AuditConfig {
        let path = match raw.path.as_str() {
            "-" => AuditPath::Stdout,
            "" => {
                self.problem("audit.path", "must name a file, or \"-\" for stdout");
                AuditPath::Stdout
            }
            p => match p.strip_prefix("syslog://") {
                Some(addr) => {
                    let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok()
                    });
                    if !valid {
                        self.problem(
                            "audit.path",
                            "a syslog collector is \"syslog://HOST:PORT\" (TCP)",
                        );
                    }
                    AuditPath::Syslog {
                        addr: addr.to_owned(),
                        checkpoint: PathBuf::from(&raw.checkpoint),
                    }
                }
                None => AuditPath::File(PathBuf::from(p)),
            },
        };
        AuditConfig {
            path,
            fsync: match raw.fsync {
                RawFsync::Always => Fsync::Always,
                RawFsync::Batch => Fsync::Batch,
                RawFsync::Never => Fsync::Never,
            },
            redact_arguments: raw.redact_arguments,
            rotate_bytes: raw.rotate_bytes,
            queue_depth: self.count("audit.queue_depth", raw.queue_depth),
        }
    }

    pub(super) fn telemetry(&mut self, raw: RawTelemetry) -> TelemetryConfig {
        let otlp_endpoint = raw.otlp_endpoint.and_then(|url| match check_url(&url) {
            Ok(()) => Some(url),
            Err(message) => {
                self.problem("telemetry.otlp_endpoint", message);
                None
            }
        });
        TelemetryConfig {
            otlp_endpoint,
            service_name: raw.service_name,
        }
    }

    pub(super) fn rate(&mut self, path: &str, raw: &RawRate) -> Option<Rate> {
        let per_second = u32::try_from(raw.per_second).ok().and_then(NonZeroU32::new);
        let burst = match raw.burst {
            None => per_second,
            Some(b) => u32::try_from(b).ok().and_then(NonZeroU32::new),
        };
        match (per_second, burst) {
            (Some(per_second), Some(burst)) => Some(Rate { per_second, burst }),
            _ => {
                self.problem(
                    path,
                    "per_second and burst must be between 1 and 4294967295",
                );
                None
            }
        }
    }

    pub(super) fn rate_limits(
        &mut self,
        per_principal: Option<RawRate>,
        per_agent: Option<RawRate>,
        max_in_flight_per_principal: Option<u64>,
        max_in_flight_per_backend: Option<u64>,
        max_keys: u64,
        rules: Vec<RawLimitRule>,
    ) -> RateLimits {
        let per_principal = per_principal.and_then(|r| self.rate("limits.per_principal", &r));
        let per_agent = per_agent.and_then(|r| self.rate("limits.per_agent", &r));
        let rules = rules
            .into_iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                let path = join_index("limits.rules", i);
                let rate = self.rate(&format!("{path}.rate"), rule.rate.as_ref()?)?;
                let m = rule.matches;
                Some(LimitRule {
                    tenant: m.tenant,
                    principal: m.principal,
                    agent: m.agent,
                    backend: m.backend,
                    tool: m.tool,
                    rate,
                })
            })
            .collect();
        RateLimits {
            per_principal,
            per_agent,
            max_in_flight_per_principal: max_in_flight_per_principal
                .map(|n| self.count("limits.max_in_flight_per_principal", n)),
            max_in_flight_per_backend: max_in_flight_per_backend
                .map(|n| self.count("limits.max_in_flight_per_backend", n)),
            max_keys: self.count("limits.max_rate_keys", max_keys),
            rules,
            tenants: Default::default(),
        }
    }
}
