//! The per-container byte budget (`--max-bytes`).

#![forbid(unsafe_code)]

/// The per-container byte budget (`--max-bytes`), charged as data is written.
#[derive(Debug, Clone)]
pub struct Quota {
    limit: Option<u64>,
    used: u64,
    charged: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the container's storage limit of {limit} bytes (--max-bytes) is reached: {used} bytes are in use and this layer needs more than the {available} left; remove unused images and containers in the box (`docker system prune -a`) or raise --max-bytes")]
pub struct QuotaError {
    pub limit: u64,
    pub used: u64,
    pub available: u64,
}

impl Quota {
    /// `used` is what the container's layers take before this operation.
    pub fn new(limit: Option<u64>, used: u64) -> Quota {
        Quota {
            limit,
            used,
            charged: 0,
        }
    }

    pub fn unlimited() -> Quota {
        Quota::new(None, 0)
    }

    /// Takes `bytes` from the budget, or refuses without taking any.
    pub fn charge(&mut self, bytes: u64) -> Result<(), QuotaError> {
        if let Some(limit) = self.limit {
            let total = self.used.saturating_add(self.charged);
            if total.saturating_add(bytes) > limit {
                return Err(QuotaError {
                    limit,
                    used: total,
                    available: limit.saturating_sub(total),
                });
            }
        }
        self.charged = self.charged.saturating_add(bytes);
        Ok(())
    }

    /// What this operation has written so far.
    pub fn charged(&self) -> u64 {
        self.charged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_refuses_past_the_limit_without_charging() {
        let mut q = Quota::new(Some(100), 40);
        q.charge(50).unwrap();
        let err = q.charge(11).unwrap_err();
        assert_eq!(
            err,
            QuotaError {
                limit: 100,
                used: 90,
                available: 10
            }
        );
        assert!(err.to_string().contains("--max-bytes"));
        q.charge(10).unwrap();
        assert_eq!(q.charged(), 60);
        let mut free = Quota::unlimited();
        free.charge(u64::MAX).unwrap();
    }
}
