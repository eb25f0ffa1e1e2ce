//! The load: customers, their safes and endpoints, and the uploads SafeSync
//! would send, all from the seed. Each safe's transactions are numbered and
//! timed in order (one every 90 s of safe time), so the figures can tell
//! whether a safe's transactions reached an endpoint out of order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use platformsync_domain::testdata::{
    NOTES, Rng, amount_text, bundle, coins, local_iso, serial, write_denominations,
};

/// What to generate.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub seed: u64,
    pub transactions: usize,
    pub safes: usize,
    pub customers: usize,
    /// Endpoints per customer (the first takes everything, the others only
    /// `CashIn` in smaller batches).
    pub endpoints_per_customer: usize,
    /// Items per upload.
    pub upload_size: usize,
    /// Chance that an upload is followed by a re-send of an earlier one
    /// (same transactions, read off the safe again: new `RetrievedOn`).
    pub resend_rate: f64,
}

/// One endpoint of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub id: String,
    pub customer: String,
    /// Path on the receiver (`/<id>`).
    pub path: String,
    /// Extra `platformsync endpoint add` flags.
    pub flags: Vec<String>,
    pub cash_only: bool,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub serials: Vec<String>,
    pub endpoints: Vec<EndpointSpec>,
}

/// One generated transaction.
#[derive(Debug, Clone)]
pub struct Tx {
    pub safe: usize,
    /// Safe-local time, `YYYY-MM-DDTHH:MM:SS` (unique per safe, increasing).
    pub when: String,
    pub cash_in: bool,
    /// The JSON object without `RetrievedOn`: `{head,"RetrievedOn":..,tail}`.
    head: String,
    tail: String,
    minute_of_read: i64,
}

/// One upload: which transactions, and whether it is a re-send.
#[derive(Debug, Clone)]
pub struct Upload {
    pub items: Vec<usize>,
    /// 0 for the first send; n for the n-th re-read of these transactions.
    pub reread: u32,
}

/// The whole load.
#[derive(Debug, Clone)]
pub struct Load {
    pub serials: Vec<String>,
    pub customers: Vec<Customer>,
    pub txs: Vec<Tx>,
    pub uploads: Vec<Upload>,
    /// Customer of each safe.
    pub owner: HashMap<String, String>,
}

const BASE: time::PrimitiveDateTime = time::macros::datetime!(2026-01-05 06:00);

/// `n` distinct serials in the spec's shapes.
fn serials(n: usize, rng: &mut Rng) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < n.max(1) {
        let serial = serial(["UT", "CT", "LS", "UH"][out.len() % 4], rng);
        if seen.insert(serial.clone()) {
            out.push(serial);
        }
    }
    out
}

fn transaction(serial: &str, safe: usize, index: usize, rng: &mut Rng) -> Tx {
    let at = BASE + time::Duration::seconds(90 * index as i64 + (safe % 60) as i64);
    let when = local_iso(at);
    let user = *rng.pick(&["JOSE CHAVEZ", "MARY SMITH", "A. NGUYEN", "STORE MGR"]);
    let roll = rng.below(20);
    let (ty, denominations, extra, cents): (&str, Vec<(u64, u64)>, String, u64) = match roll {
        0..=10 => {
            let d = bundle(&NOTES, 3, 60, rng);
            let cents = d.iter().map(|(u, c)| u * c).sum();
            ("CashIn", d, String::new(), cents)
        }
        11..=13 => (
            "ManualCashTransaction",
            Vec::new(),
            format!(
                ",\"DepositReferenceNumber\":\"{}\"",
                1_000_000 + rng.below(9_000_000)
            ),
            100 + rng.below(200_000),
        ),
        14..=16 => {
            let d = coins(rng);
            let cents = d.iter().map(|(u, c)| u * c).sum();
            ("CoinDispense", d, String::new(), cents)
        }
        17 => (
            "TubeLoaded",
            Vec::new(),
            format!(
                ",\"TubeCount\":{},\"TubeColumn\":{}",
                1 + rng.below(40),
                1 + rng.below(8)
            ),
            0,
        ),
        _ => (
            "ChangeRequest",
            Vec::new(),
            format!(
                ",\"ChangePurchaseNumber\":\"{}\"",
                100_000 + rng.below(900_000)
            ),
            2_500 * (1 + rng.below(8)),
        ),
    };
    let mut denoms = String::new();
    write_denominations(&mut denoms, &denominations, "USD");
    Tx {
        safe,
        cash_in: ty == "CashIn",
        head: format!(
            "\"PickupGroupId\":{},\"SerialNumber\":\"{serial}\"",
            61_000_000 + safe as u64 * 1000 + index as u64 / 50
        ),
        tail: format!(
            "\"TransactionDateTime\":\"{when}\",\"UserName\":\"{user}\",\"TransactionType\":\"{ty}\",\"Amount\":{},\"Denominations\":[{denoms}]{extra}",
            amount_text(cents)
        ),
        when,
        minute_of_read: 90 * index as i64 / 60 + 20 + rng.below(40) as i64,
    }
}

impl Load {
    pub fn generate(o: &LoadOptions) -> Self {
        let mut rng = Rng::new(o.seed ^ 0x10AD);
        let serials = serials(o.safes, &mut rng);
        let customers_n = o.customers.max(1);
        let mut customers: Vec<Customer> = (0..customers_n)
            .map(|c| {
                let id = format!("chaos-{}", (b'a' + (c % 26) as u8) as char);
                let endpoints = (0..o.endpoints_per_customer.max(1))
                    .map(|e| {
                        let eid = format!("{id}-e{}", e + 1);
                        let (flags, cash_only) = if e == 0 {
                            (Vec::new(), false)
                        } else {
                            (
                                vec![
                                    "--whitelist".into(),
                                    "CashIn".into(),
                                    "--max-batch-size".into(),
                                    (100 * e).to_string(),
                                ],
                                true,
                            )
                        };
                        EndpointSpec {
                            path: format!("/{eid}"),
                            id: eid,
                            customer: id.clone(),
                            flags,
                            cash_only,
                        }
                    })
                    .collect();
                Customer {
                    id,
                    serials: Vec::new(),
                    endpoints,
                }
            })
            .collect();
        let mut owner = HashMap::new();
        for (i, serial) in serials.iter().enumerate() {
            let c = &mut customers[i % customers_n];
            c.serials.push(serial.clone());
            owner.insert(serial.clone(), c.id.clone());
        }

        // Transactions round-robin over the safes, each safe's in time order.
        let mut per_safe: Vec<Vec<usize>> = vec![Vec::new(); serials.len()];
        let mut txs = Vec::with_capacity(o.transactions);
        for i in 0..o.transactions {
            let safe = i % serials.len();
            let index = per_safe[safe].len();
            per_safe[safe].push(txs.len());
            txs.push(transaction(&serials[safe], safe, index, &mut rng));
        }

        // Uploads: a random set of safes, the next few transactions of each
        // (SafeSync reads a safe's journal in order), until all are sent.
        let chunk = 10usize;
        let mut cursor = vec![0usize; serials.len()];
        let mut active: Vec<usize> = (0..serials.len())
            .filter(|&s| !per_safe[s].is_empty())
            .collect();
        let mut uploads: Vec<Upload> = Vec::new();
        while !active.is_empty() {
            let mut items = Vec::new();
            let want = (o.upload_size.max(1)).div_ceil(chunk).min(active.len());
            // Partial Fisher-Yates: `want` distinct safes.
            for k in 0..want {
                let j = k + rng.below((active.len() - k) as u64) as usize;
                active.swap(k, j);
            }
            let mut picked: Vec<usize> = active[..want].to_vec();
            picked.sort_unstable();
            for safe in picked {
                let end = (cursor[safe] + chunk).min(per_safe[safe].len());
                items.extend_from_slice(&per_safe[safe][cursor[safe]..end]);
                cursor[safe] = end;
            }
            active.retain(|&s| cursor[s] < per_safe[s].len());
            uploads.push(Upload { items, reread: 0 });
            if rng.unit() < o.resend_rate {
                let first_sends = uploads.iter().filter(|u| u.reread == 0).count();
                let earlier = rng.below(first_sends as u64) as usize;
                let original = uploads
                    .iter()
                    .filter(|u| u.reread == 0)
                    .nth(earlier)
                    .cloned();
                if let Some(original) = original {
                    // The n-th re-read of the same transactions.
                    let reread =
                        uploads.iter().filter(|u| u.items == original.items).count() as u32;
                    uploads.push(Upload {
                        items: original.items,
                        reread,
                    });
                }
            }
        }
        Load {
            serials,
            customers,
            txs,
            uploads,
            owner,
        }
    }

    /// The upload's body; a re-read gets later `RetrievedOn` values.
    pub fn body(&self, upload: &Upload) -> Vec<u8> {
        let mut out = String::with_capacity(upload.items.len() * 400 + 32);
        out.push_str("{\"Transactions\":[");
        for (i, &t) in upload.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let tx = &self.txs[t];
            let read =
                BASE + time::Duration::minutes(tx.minute_of_read + 7 * i64::from(upload.reread));
            let _ = write!(
                out,
                "{{{},\"RetrievedOn\":\"{}Z\",{}}}",
                tx.head,
                local_iso(read + time::Duration::hours(6)),
                tx.tail
            );
        }
        out.push_str("]}");
        out.into_bytes()
    }

    /// Every endpoint, in customer order.
    pub fn endpoints(&self) -> Vec<EndpointSpec> {
        self.customers
            .iter()
            .flat_map(|c| c.endpoints.iter().cloned())
            .collect()
    }

    /// A transaction's identity as a receiver sees it.
    pub fn identity(&self, t: usize) -> String {
        let tx = &self.txs[t];
        identity(&self.serials[tx.safe], &tx.when)
    }

    /// What each endpoint (by path) should receive: identities.
    pub fn expected(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.endpoints() {
            out.entry(e.path.clone()).or_default();
        }
        for (t, tx) in self.txs.iter().enumerate() {
            let customer = &self.owner[&self.serials[tx.safe]];
            for e in self
                .customers
                .iter()
                .filter(|c| &c.id == customer)
                .flat_map(|c| &c.endpoints)
            {
                if !e.cash_only || tx.cash_in {
                    out.entry(e.path.clone())
                        .or_default()
                        .insert(self.identity(t));
                }
            }
        }
        out
    }

    /// Items in all uploads, re-sends included.
    pub fn items_sent(&self) -> usize {
        self.uploads.iter().map(|u| u.items.len()).sum()
    }
}

/// `SERIAL|TransactionDateTime`: unique per transaction in this load.
pub fn identity(serial: &str, when: &str) -> String {
    format!("{}|{when}", serial.to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64) -> LoadOptions {
        LoadOptions {
            seed,
            transactions: 2_000,
            safes: 50,
            customers: 3,
            endpoints_per_customer: 2,
            upload_size: 200,
            resend_rate: 0.2,
        }
    }

    #[test]
    fn same_seed_same_load_and_every_transaction_sent_in_safe_order() {
        let a = Load::generate(&options(5));
        let b = Load::generate(&options(5));
        assert_eq!(a.uploads.len(), b.uploads.len());
        assert_eq!(a.body(&a.uploads[3]), b.body(&b.uploads[3]));
        assert_eq!(a.serials.len(), 50);
        assert_eq!(a.endpoints().len(), 6);
        let firsts: Vec<&Upload> = a.uploads.iter().filter(|u| u.reread == 0).collect();
        let mut seen = vec![false; a.txs.len()];
        let mut last_of_safe: HashMap<usize, String> = HashMap::new();
        for u in &firsts {
            for &t in &u.items {
                assert!(!seen[t], "sent once as a first send");
                seen[t] = true;
                let tx = &a.txs[t];
                if let Some(prev) = last_of_safe.insert(tx.safe, tx.when.clone()) {
                    assert!(prev < tx.when, "a safe's transactions go in order");
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
        assert!(a.uploads.iter().any(|u| u.reread > 0), "some re-sends");
        let body: serde_json::Value = serde_json::from_slice(&a.body(&a.uploads[0])).unwrap();
        assert_eq!(
            body["Transactions"].as_array().unwrap().len(),
            a.uploads[0].items.len()
        );
    }

    #[test]
    fn expectations_follow_owners_and_whitelists() {
        let load = Load::generate(&options(9));
        let expected = load.expected();
        let total: usize = expected.values().map(BTreeSet::len).sum();
        let cash = load.txs.iter().filter(|t| t.cash_in).count();
        assert_eq!(total, load.txs.len() + cash);
        assert!(cash > 0 && cash < load.txs.len());
        for c in &load.customers {
            for s in &c.serials {
                assert_eq!(load.owner[s], c.id);
            }
        }
    }
}
