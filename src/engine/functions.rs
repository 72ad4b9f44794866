//! SQL functions cimlake adds to every session: `cidr_match(ip, network)`, true when the text `ip`
//! is an address inside `network` (`10.0.0.0/8`, `fe80::/10`, or one address), null when `ip` is
//! null or not an address. Sigma's `|cidr` compiles to it; users may call it too.

use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// The function's name in SQL.
pub const CIDR_MATCH: &str = "cidr_match";

/// A network: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `ip` is in the network. An IPv4 address written as IPv6 (`::ffff:10.1.2.3`) is
    /// its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mask = |width: u32| {
            if self.bits == 0 {
                0
            } else {
                u128::MAX << (width - u32::from(self.bits))
            }
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask(32) as u32;
                u32::from(net) & m == u32::from(ip) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask(128);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }
}

/// `ADDRESS/BITS` or one address.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, bits) = match s.trim().split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s.trim(), None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => width,
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= width)
            .ok_or_else(|| format!("/{b} is not a prefix length from 0 to {width}"))?,
    };
    Ok(Cidr { addr, bits })
}

/// `cidr_match(ip, network)`.
pub fn cidr_match_udf() -> ScalarUDF {
    create_udf(
        CIDR_MATCH,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let net = match &args[1] {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(n))) => Some(
                    parse_cidr(n)
                        .map_err(|e| DataFusionError::Execution(format!("{CIDR_MATCH}: {e}")))?,
                ),
                ColumnarValue::Scalar(_) => None,
                ColumnarValue::Array(_) => {
                    return Err(DataFusionError::Execution(format!(
                        "{CIDR_MATCH}: the network must be a constant"
                    )));
                }
            };
            let one = |ip: Option<&str>| -> Option<bool> {
                Some(net?.contains(ip?.trim().parse().ok()?))
            };
            Ok(match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(ip)) => {
                    ColumnarValue::Scalar(ScalarValue::Boolean(one(ip.as_deref())))
                }
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::Boolean(None)),
                ColumnarValue::Array(a) => {
                    let ips = a.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{CIDR_MATCH}: the address must be text"
                        ))
                    })?;
                    let out: BooleanArray = (0..ips.len())
                        .map(|i| one((!ips.is_null(i)).then(|| ips.value(i))))
                        .collect();
                    ColumnarValue::Array(Arc::new(out))
                }
            })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        let private = parse_cidr("172.16.0.0/12").unwrap();
        assert!(private.contains(ip("172.31.255.1")));
        assert!(!private.contains(ip("172.32.0.1")));
        assert!(
            private.contains(ip("::ffff:172.16.0.9")),
            "IPv4-mapped IPv6"
        );
        let link_local = parse_cidr("fe80::/10").unwrap();
        assert!(link_local.contains(ip("fe80::1d2e:3f4a")));
        assert!(link_local.contains(ip("febf::1")));
        assert!(!link_local.contains(ip("fec0::1")));
        assert!(!link_local.contains(ip("10.0.0.1")));
        assert!(
            parse_cidr("::1/128")
                .unwrap()
                .contains(ip("0:0:0:0:0:0:0:1")),
            "IPv6 compares by value, not text"
        );
        assert!(parse_cidr("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(parse_cidr("10.0.0.1").unwrap().contains(ip("10.0.0.1")));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0/8").is_err());
    }
}
