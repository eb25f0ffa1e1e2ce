//! Dedup key invariance: re-serialisation and re-reading do not change a
//! record's key; any change to an identifying field does.

use proptest::prelude::*;

use platformsync_domain::dedup::DedupKey;
use platformsync_domain::upload::parse_upload;

#[derive(Debug, Clone)]
struct Spec {
    pickup: i64,
    serial: String,
    when: String,
    user: String,
    ty: usize,
    /// (unit cents, count, currency index)
    denoms: Vec<(u64, i64, usize)>,
    /// Amount in cents when there are no denominations.
    loose_amount: u64,
    register: Option<String>,
    cpn: Option<String>,
    drn: Option<String>,
    tube_count: Option<i64>,
    tube_column: Option<i64>,
}

/// (canonical, other spellings that must give the same key)
const TYPES: [(&str, &[&str]); 4] = [
    ("CashIn", &["ValidatedCashIn", "cashin", "30"]),
    ("ChangeRequest", &["ChangePurchase", "CHANGEPURCHASE", "32"]),
    ("EndOfDay", &["endofday", "100"]),
    ("TubeDumped", &["TUBEDUMPED"]),
];
const CURRENCIES: [&str; 2] = ["USD", "CAD"];

impl Spec {
    fn amount_cents(&self) -> u64 {
        if self.denoms.is_empty() {
            self.loose_amount
        } else {
            self.denoms
                .iter()
                .map(|(u, c, _)| u * c.unsigned_abs())
                .sum()
        }
    }
}

#[derive(Debug, Clone)]
struct Style {
    order: Vec<usize>,
    denom_order: Vec<usize>,
    denom_field_order: Vec<usize>,
    /// Extra fraction zeros per number (scale variations).
    extra_zeros: Vec<usize>,
    ws: Vec<&'static str>,
    retrieved_on: String,
    type_spelling: usize,
    nulls_spelled_out: bool,
}

/// Cents as decimal text with at least `min_scale` fraction digits plus `extra` zeros.
fn money(cents: u64, extra: usize) -> String {
    let (int, frac) = (cents / 100, cents % 100);
    match (frac, extra) {
        (0, 0) => format!("{int}"),
        (0, 1) => format!("{int}.0"),
        (f, _) if f % 10 == 0 && extra == 1 => format!("{int}.{}", f / 10),
        (f, e) => format!("{int}.{f:02}{}", "0".repeat(e.saturating_sub(2))),
    }
}

fn render(spec: &Spec, style: &Style) -> String {
    let mut ws = style.ws.iter().cycle();
    let mut w = || *ws.next().unwrap_or(&"");
    let mut zeros = style.extra_zeros.iter().cycle();
    let mut z = || *zeros.next().unwrap_or(&0);
    let (canonical, others) = TYPES[spec.ty];
    let spelling = if style.type_spelling == 0 || others.is_empty() {
        format!("\"{canonical}\"")
    } else {
        let s = others[(style.type_spelling - 1) % others.len()];
        if s.bytes().all(|b| b.is_ascii_digit()) {
            s.to_owned()
        } else {
            format!("\"{s}\"")
        }
    };
    let denoms: Vec<String> = style
        .denom_order
        .iter()
        .filter_map(|&i| spec.denoms.get(i))
        .map(|(unit, count, cur)| {
            let parts = [
                format!("\"UnitValue\"{}:{}{}", w(), w(), money(*unit, z())),
                format!("\"Count\":{}{count}", w()),
                format!("\"Currency\":\"{}\"", CURRENCIES[*cur]),
            ];
            let ordered: Vec<&str> = style
                .denom_field_order
                .iter()
                .map(|&i| parts[i].as_str())
                .collect();
            format!("{{{}{}{}}}", w(), ordered.join(&format!(",{}", w())), w())
        })
        .collect();
    let opt_str = |name: &str, v: &Option<String>| match v {
        Some(v) => Some(format!("\"{name}\":\"{v}\"")),
        None if style.nulls_spelled_out => Some(format!("\"{name}\":null")),
        None => None,
    };
    let opt_int = |name: &str, v: &Option<i64>| match v {
        Some(v) => Some(format!("\"{name}\":{v}")),
        None if style.nulls_spelled_out => Some(format!("\"{name}\":null")),
        None => None,
    };
    let fields: Vec<Option<String>> = vec![
        Some(format!("\"PickupGroupId\":{}", spec.pickup)),
        Some(format!("\"SerialNumber\":\"{}\"", spec.serial)),
        Some(format!("\"RetrievedOn\":\"{}\"", style.retrieved_on)),
        Some(format!("\"TransactionDateTime\":\"{}\"", spec.when)),
        Some(format!("\"UserName\":\"{}\"", spec.user)),
        Some(format!("\"TransactionType\":{spelling}")),
        Some(format!(
            "\"Amount\"{}:{}{}",
            w(),
            w(),
            money(spec.amount_cents(), z())
        )),
        Some(format!("\"Denominations\":[{}]", denoms.join(","))),
        opt_str("Register", &spec.register),
        opt_str("ChangePurchaseNumber", &spec.cpn),
        opt_str("DepositReferenceNumber", &spec.drn),
        opt_int("TubeCount", &spec.tube_count),
        opt_int("TubeColumn", &spec.tube_column),
    ];
    let ordered: Vec<String> = style
        .order
        .iter()
        .filter_map(|&i| fields.get(i).cloned().flatten())
        .collect();
    format!(
        "{{{}{}{}}}",
        w(),
        ordered.join(&format!("{},{}", w(), w())),
        w()
    )
}

fn key_of(item: &str) -> DedupKey {
    let body = format!("{{\"Transactions\" : [ {item} ]}}");
    let parsed = parse_upload(body.as_bytes()).expect("body");
    match &parsed.items[0].result {
        Ok(i) => i.dedup_key(),
        Err(e) => panic!("{e}\n{item}"),
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            any::<i64>(),
            "[A-Z]{2}[0-9]{5}",
            (2000i32..2030, 1u8..=12, 1u8..=28, 0u8..24, 0u8..60, 0u8..60),
            "[A-Z][A-Z .]{0,20}",
            0..TYPES.len(),
        ),
        (
            prop::collection::vec((1u64..100_000, 1i64..500, 0..1usize), 0..4),
            0u64..10_000_000,
            prop::option::of("[A-Z0-9]{1,8}"),
            prop::option::of("[0-9]{1,15}"),
            prop::option::of("[0-9]{4,15}"),
            prop::option::of(0i64..100),
            prop::option::of(0i64..10),
        ),
    )
        .prop_map(
            |(
                (pickup, serial, (y, mo, d, h, mi, s), user, ty),
                (denoms, loose_amount, register, cpn, drn, tube_count, tube_column),
            )| Spec {
                pickup,
                serial,
                when: format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"),
                user,
                ty,
                denoms,
                loose_amount,
                register,
                cpn,
                drn,
                tube_count,
                tube_column,
            },
        )
}

fn style(n_denoms: usize) -> impl Strategy<Value = Style> {
    (
        Just((0..13).collect::<Vec<_>>()).prop_shuffle(),
        Just((0..n_denoms).collect::<Vec<_>>()).prop_shuffle(),
        Just(vec![0usize, 1, 2]).prop_shuffle(),
        prop::collection::vec(0usize..5, 1..8),
        prop::collection::vec(
            proptest::sample::select(&["", " ", "\n", "\t", "  \r\n "][..]),
            1..8,
        ),
        (0u32..1_000_000, 0usize..3),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(
            |(
                order,
                denom_order,
                denom_field_order,
                extra_zeros,
                ws,
                (r, rform),
                type_spelling,
                nulls,
            )| Style {
                order,
                denom_order,
                denom_field_order,
                extra_zeros,
                ws,
                retrieved_on: match rform {
                    0 => format!("2024-01-01T00:00:{:02}Z", r % 60),
                    1 => format!("2024-02-03T04:05:06.{:07}Z", r),
                    _ => format!("2023-12-31T23:59:59.{:03}-06:00", r % 1000),
                },
                type_spelling,
                nulls_spelled_out: nulls,
            },
        )
}

fn canonical_style(n_denoms: usize) -> Style {
    Style {
        order: (0..13).collect(),
        denom_order: (0..n_denoms).collect(),
        denom_field_order: vec![0, 1, 2],
        extra_zeros: vec![0],
        ws: vec![""],
        retrieved_on: "2019-09-12T14:11:20.3870000Z".to_owned(),
        type_spelling: 0,
        nulls_spelled_out: false,
    }
}

/// One change to one identifying field.
fn mutate(spec: &Spec, which: usize) -> Spec {
    let mut s = spec.clone();
    match which {
        0 => s.pickup = s.pickup.wrapping_add(1),
        1 => s
            .serial
            .replace_range(0..1, if s.serial.starts_with('Z') { "Y" } else { "Z" }),
        2 => s
            .when
            .replace_range(18..19, if s.when.ends_with('0') { "1" } else { "0" }),
        3 => s.user.push('X'),
        4 => s.ty = (s.ty + 1) % TYPES.len(),
        5 => s.denoms.push((2_000, 1, 0)),
        6 => match s.denoms.first_mut() {
            Some(d) => d.1 += 1,
            None => s.loose_amount += 1,
        },
        7 => match s.denoms.first_mut() {
            Some(d) => d.2 = 1 - d.2,
            None => s.loose_amount += 100,
        },
        8 => {
            s.register = if s.register.is_some() {
                None
            } else {
                Some("R1".into())
            }
        }
        9 => {
            s.cpn = if s.cpn.is_some() {
                None
            } else {
                Some("1".into())
            }
        }
        10 => {
            s.drn = match &s.drn {
                Some(d) if d != "1234" => Some("1234".into()),
                _ => Some("5678".into()),
            }
        }
        11 => s.tube_count = Some(s.tube_count.map_or(0, |c| c + 1)),
        _ => s.tube_column = Some(s.tube_column.map_or(0, |c| c + 1)),
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn presentation_does_not_change_the_key(
        (spec, style) in spec().prop_flat_map(|s| { let n = s.denoms.len(); (Just(s), style(n)) })
    ) {
        let reference = key_of(&render(&spec, &canonical_style(spec.denoms.len())));
        let restyled = render(&spec, &style);
        prop_assert_eq!(key_of(&restyled), reference, "{}", restyled);
    }

    #[test]
    fn any_identifying_change_changes_the_key(spec in spec(), which in 0usize..13) {
        let style = canonical_style(spec.denoms.len());
        let before = key_of(&render(&spec, &style));
        let changed = mutate(&spec, which);
        let after = key_of(&render(&changed, &canonical_style(changed.denoms.len())));
        prop_assert_ne!(before, after, "field change {} did not change the key", which);
    }
}

#[test]
fn sequence_number_overrides_content() {
    let base = r#"{"PickupGroupId":1,"SerialNumber":"ut07761","RetrievedOn":"2019-09-12T14:11:20Z","TransactionDateTime":"2019-09-26T00:01:00","UserName":"U","TransactionType":"CashIn","Amount":1,"SequenceNumber":9}"#;
    let other = base.replace("\"UserName\":\"U\"", "\"UserName\":\"V\"");
    assert_eq!(key_of(base), key_of(&other));
    assert_eq!(key_of(base).to_string(), "seq:UT07761:00000000000000000009");
}
