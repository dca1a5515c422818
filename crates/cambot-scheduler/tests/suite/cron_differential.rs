//! Differential test of the cron evaluator against Python croniter (`tests/oracle/`).
//!
//! Needs the oracle installed: `scripts/setup/cron-oracle.sh` (croniter and tzdata, pinned, in a
//! virtual environment under the cache directory), so it is `#[ignore]`d in a plain
//! `cargo test`. Without the oracle it fails, saying so, under `CAMBOT_REQUIRE_ALL=1` (as
//! `scripts/test.sh` runs it), and is skipped with a `SKIPPED` line otherwise
//! ([`super::require::require_tool`]).
//! Environment:
//! - `CRON_ORACLE_PYTHON`: the interpreter (default: the setup script's environment,
//!   `${CAMBOT_CACHE_DIR:-$HOME/.cache/cambot}/cron-oracle-venv/bin/python`, else `python3`);
//! - `CRON_DIFF_SEED`, `CRON_DIFF_CASES`: RNG seed and case count (defaults below).
//!
//! Every disagreement must be one of the deliberate differences listed in the module docs of
//! `cambot_scheduler::cron`, verified precisely (see [`explain`]); any other fails the test.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;

use cambot_scheduler::cron::CronExpr;
use cambot_scheduler::cron::next_after;
use chrono::DateTime;
use chrono::NaiveDate;
use chrono::Offset;
use chrono::TimeZone;
use chrono::Utc;
use chrono_tz::Tz;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use serde_json::json;

const DEFAULT_SEED: u64 = 0x5eed_c407;
const DEFAULT_CASES: usize = 12_000;
/// Answers asked of croniter per query (more are fetched when needed).
const ANSWERS: usize = 6;
const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Havana",
    "America/Sao_Paulo",
    "America/Santiago",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Berlin",
    "Africa/Cairo",
    "Asia/Tehran",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
];
const FIRST_YEAR: i32 = 1996;
const LAST_YEAR: i32 = 2040;

#[derive(Debug, Clone)]
struct Case {
    expr: String,
    tz: Tz,
    after: i64,
}

#[derive(Debug, Default)]
struct Tally {
    agree: usize,
    both_reject: usize,
    /// Disagreements explained by documented differences (a case may show several).
    explained: usize,
    repeated_hour: usize,
    full_day_field: usize,
    equal_range: usize,
    near_transition: usize,
    mismatches: Vec<String>,
}

#[test]
#[ignore = "needs the croniter oracle (scripts/setup/cron-oracle.sh): run by scripts/test.sh"]
fn cron_evaluator_agrees_with_croniter() {
    if super::require::require_tool("cron_evaluator_agrees_with_croniter", probe_oracle()).is_none()
    {
        return;
    }
    let seed = env_number("CRON_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_number("CRON_DIFF_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    let mut rng = StdRng::seed_from_u64(seed);
    let transitions: BTreeMap<&str, Vec<i64>> =
        ZONES.iter().map(|z| (*z, transitions(zone(z)))).collect();
    let cases: Vec<Case> = (0..count)
        .map(|_| gen_case(&mut rng, &transitions))
        .collect();

    let (header, answers) = ask_oracle(&cases, ANSWERS);
    let tzdata = header["tzdata"].as_str().unwrap_or("?").to_owned();
    println!(
        "cron differential: seed {seed:#x}, {count} cases, croniter {}, oracle tzdata {tzdata}, \
         chrono-tz tzdata {}",
        header["croniter"],
        chrono_tz::IANA_TZDB_VERSION
    );
    assert_eq!(
        header["croniter"], "7.0.0",
        "the documented differences are for croniter 7.0.0; run scripts/setup/cron-oracle.sh"
    );

    let mut tally = Tally::default();
    let mut pending: Vec<(usize, Vec<i64>)> = Vec::new();
    for (i, (case, answer)) in cases.iter().zip(answers).enumerate() {
        let near = near_any(&transitions[case.tz.name()], case.after, 4 * 3600);
        tally.near_transition += usize::from(near);
        match answer {
            Err(err) => match CronExpr::parse(&case.expr) {
                Err(_) => tally.both_reject += 1,
                Ok(_) => tally
                    .mismatches
                    .push(format!("{case:?}: croniter rejects ({err}), we accept")),
            },
            Ok(list) => pending.push((i, list)),
        }
    }
    // Resolve the accepted cases, fetching more croniter answers while a verdict needs them.
    for _round in 0..40 {
        let mut more = Vec::new();
        for (i, list) in pending.drain(..) {
            match explain(&cases[i], &list) {
                Verdict::Agree => tally.agree += 1,
                Verdict::Explained(why) => {
                    tally.explained += 1;
                    tally.repeated_hour += usize::from(why.repeated_hour);
                    tally.full_day_field += usize::from(why.full_day_field);
                    tally.equal_range += usize::from(why.equal_range);
                }
                Verdict::Mismatch(why) => tally.mismatches.push(why),
                Verdict::NeedMore => more.push((i, list)),
            }
        }
        if more.is_empty() {
            break;
        }
        let follow_ups: Vec<Case> = more
            .iter()
            .map(|(i, list)| Case {
                after: *list.last().unwrap(),
                ..cases[*i].clone()
            })
            .collect();
        let (_, extra) = ask_oracle(&follow_ups, ANSWERS);
        for ((i, mut list), extra) in more.into_iter().zip(extra) {
            list.extend(extra.unwrap_or_default());
            pending.push((i, list));
        }
    }
    for (i, _) in &pending {
        tally
            .mismatches
            .push(format!("{:?}: unresolved after 40 rounds", cases[*i]));
    }

    println!(
        "cron differential: {} agree, {} rejected by both, {} explained by documented \
         differences: {} repeated-hour (croniter fires wall-clock expressions twice), {} \
         full-day-field (croniter reads a full day field as *), {} equal-range (croniter reads \
         a-a as the whole range); {} cases start within 4 h of a DST change; {} mismatches",
        tally.agree,
        tally.both_reject,
        tally.explained,
        tally.repeated_hour,
        tally.full_day_field,
        tally.equal_range,
        tally.near_transition,
        tally.mismatches.len()
    );
    for m in tally.mismatches.iter().take(30) {
        println!("MISMATCH {m}");
    }
    assert!(
        tally.mismatches.is_empty(),
        "{} disagreements with croniter (oracle tzdata {tzdata}, chrono-tz {})",
        tally.mismatches.len(),
        chrono_tz::IANA_TZDB_VERSION
    );
    assert!(count < 10_000 || tally.agree >= count * 9 / 10);
    assert!(
        count < 10_000 || tally.repeated_hour > 0,
        "no repeated-hour case was generated"
    );
    assert!(
        count < 10_000 || tally.equal_range > 0,
        "no equal-range case was generated"
    );
    assert!(count < 10_000 || tally.near_transition >= count / 3);
}

enum Verdict {
    Agree,
    Explained(Why),
    NeedMore,
    Mismatch(String),
}

/// Which documented differences explain a disagreement.
#[derive(Debug, Clone, Copy, Default)]
struct Why {
    repeated_hour: bool,
    full_day_field: bool,
    equal_range: bool,
}

/// Compares our answer with croniter's answers `list` (its first few firings after the case's
/// time). A disagreement passes only as documented differences, each checked exactly:
/// - croniter's reading of the syntax ([`croniter_reading`]: an `a-a` range is the whole range;
///   a full day field is `*` when the other day field's text has a `*`): croniter's answer must
///   equal ours for the expression rewritten the way croniter reads it;
/// - repeated hour: for an expression with a restricted hour, croniter's answers that are the
///   second occurrence of a repeated wall time are dropped; the first remaining one must equal
///   ours (for the expression, or for croniter's reading of it).
fn explain(case: &Case, list: &[i64]) -> Verdict {
    let after = DateTime::from_timestamp(case.after, 0).unwrap();
    let parsed = CronExpr::parse(&case.expr);
    let ours = parsed
        .as_ref()
        .ok()
        .and_then(|expr| next_after(expr, after, case.tz))
        .map(|t| t.timestamp());
    if parsed.is_ok() && ours == list.first().copied() {
        return Verdict::Agree;
    }
    // We may reject what croniter reads differently (`0 0 30 FEB-FEB *` never matches here).
    let mut readings: Vec<(CronExpr, Why)> = parsed
        .ok()
        .map(|e| (e, Why::default()))
        .into_iter()
        .collect();
    if let Some((read, why)) = croniter_reading(&case.expr) {
        readings.push((CronExpr::parse(&read).unwrap(), why));
    }
    for (reading, why) in readings {
        let ours = next_after(&reading, after, case.tz).map(|t| t.timestamp());
        if ours == list.first().copied() {
            return Verdict::Explained(why);
        }
        if reading.every_hour() || !is_second_occurrence(list[0], case.tz) {
            continue;
        }
        match list.iter().find(|t| !is_second_occurrence(**t, case.tz)) {
            None => return Verdict::NeedMore,
            Some(t) if Some(*t) == ours => {
                return Verdict::Explained(Why {
                    repeated_hour: true,
                    ..why
                });
            }
            Some(_) => {}
        }
    }
    Verdict::Mismatch(format!(
        "{case:?} ({} local): ours {}, croniter {}",
        fmt_local(case.after, case.tz),
        match CronExpr::parse(&case.expr) {
            Err(err) => format!("rejected ({err})"),
            Ok(_) => ours.map_or("none".to_owned(), |t| fmt_local(t, case.tz)),
        },
        list.iter()
            .map(|t| fmt_local(*t, case.tz))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The expression, in our syntax, that means what croniter reads `expr` as, when that differs:
/// 1. croniter reads `a-a` (and `a-a/s`) as the field's whole range: written `min-max` here
///    (still a restricted field, as croniter keeps it);
/// 2. croniter rewrites a day field that lists every value as `*` when the other day field's
///    *text* contains `*` (but is not a bare `*`, where it makes no difference).
fn croniter_reading(expr: &str) -> Option<(String, Why)> {
    let original: Vec<&str> = expr.split_whitespace().collect();
    if original.len() != 5 {
        return None;
    }
    let mut fields: Vec<String> = original
        .iter()
        .enumerate()
        .map(|(i, f)| widen_equal_ranges(i, f))
        .collect();
    let mut why = Why {
        equal_range: fields.iter().zip(&original).any(|(a, b)| a != b),
        ..Why::default()
    };
    let dom_full = original[2] != "*" && full_day_field(&format!("0 0 {} * *", fields[2]), 31);
    let dow_full = original[4] != "*" && full_day_field(&format!("0 0 * * {}", fields[4]), 7);
    let starry = |f: &str| f != "*" && f.contains('*');
    if dom_full && starry(original[4]) {
        fields[2] = "*".to_owned();
        why.full_day_field = true;
    }
    if dow_full && starry(original[2]) {
        fields[4] = "*".to_owned();
        why.full_day_field = true;
    }
    (why.equal_range || why.full_day_field).then(|| (fields.join(" "), why))
}

/// Rewrites each `a-a[/s]` element of field `index` as `min-max[/s]`.
fn widen_equal_ranges(index: usize, field: &str) -> String {
    let (min, max) = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)][index];
    let value = |token: &str| -> Option<u32> {
        let names: &[&str] = match index {
            3 => &MONTHS,
            4 => &DAYS,
            _ => &[],
        };
        let base = u32::from(index == 3);
        token.parse().ok().or_else(|| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(token))
                .map(|i| i as u32 + base)
        })
    };
    field
        .split(',')
        .map(|element| {
            let (range, step) = match element.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (element, None),
            };
            match range.split_once('-') {
                Some((a, b)) if value(a).is_some() && value(a) == value(b) => match step {
                    Some(step) => format!("{min}-{max}/{step}"),
                    None => format!("{min}-{max}"),
                },
                _ => element.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the day field of `probe` matches every day of January 2001 (which starts on a Monday).
fn full_day_field(probe: &str, days: u32) -> bool {
    let Ok(expr) = CronExpr::parse(probe) else {
        return false;
    };
    (1..=days).all(|d| {
        let day = NaiveDate::from_ymd_opt(2001, 1, d).unwrap();
        expr.matches(day.and_hms_opt(0, 0, 0).unwrap())
    })
}

fn is_second_occurrence(t: i64, tz: Tz) -> bool {
    let at = DateTime::from_timestamp(t, 0).unwrap();
    let local = at.with_timezone(&tz).naive_local();
    matches!(tz.from_local_datetime(&local), chrono::LocalResult::Ambiguous(first, second)
        if second.timestamp() == t && first.timestamp() != t)
}

fn fmt_local(t: i64, tz: Tz) -> String {
    let at = DateTime::from_timestamp(t, 0).unwrap();
    format!(
        "{t}={}",
        at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S%:z")
    )
}

/// Runs the oracle on `cases`; returns its header and, per case, the answers or the error.
fn ask_oracle(cases: &[Case], answers: usize) -> (Value, Vec<Result<Vec<i64>, String>>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/croniter_oracle.py"
    );
    let python = oracle_python();
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {python} ({e}): run scripts/setup/cron-oracle.sh")
        });
    let mut input = String::new();
    for (id, case) in cases.iter().enumerate() {
        let line = json!({"id": id, "expr": case.expr, "tz": case.tz.name(),
                          "after": case.after, "count": answers});
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let lines: Vec<String> = stdout.lines().map(Result::unwrap).collect();
    writer.join().unwrap().ok();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "croniter oracle failed ({}): {}\nrun scripts/setup/cron-oracle.sh to install it",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        lines.len(),
        cases.len() + 1,
        "oracle answered too few cases"
    );
    let header: Value = serde_json::from_str(&lines[0]).unwrap();
    let answers = lines[1..]
        .iter()
        .enumerate()
        .map(|(id, line)| {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["id"], id, "oracle answers out of order");
            match v["next"].as_array() {
                Some(list) => Ok(list.iter().map(|t| t.as_i64().unwrap()).collect()),
                None => Err(v["error"].as_str().unwrap_or("?").to_owned()),
            }
        })
        .collect();
    (header, answers)
}

// ---- case generation ----

fn gen_case(rng: &mut StdRng, transitions: &BTreeMap<&str, Vec<i64>>) -> Case {
    let zone_name = ZONES[rng.gen_range(0..ZONES.len())];
    let tz = zone(zone_name);
    let changes = &transitions[zone_name];
    let near = !changes.is_empty() && rng.gen_bool(0.55);
    let after = if near {
        let t = changes[rng.gen_range(0..changes.len())];
        match rng.gen_range(0..10) {
            0 => t,
            1 => t - 1,
            2..=4 => t + rng.gen_range(-4 * 60..=4 * 60) * 60,
            _ => t + rng.gen_range(-4 * 3600..=4 * 3600),
        }
    } else {
        let start = Utc.with_ymd_and_hms(FIRST_YEAR, 1, 1, 0, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(LAST_YEAR, 1, 1, 0, 0, 0).unwrap();
        rng.gen_range(start.timestamp()..end.timestamp())
    };
    let local_hour = DateTime::from_timestamp(after, 0)
        .unwrap()
        .with_timezone(&tz)
        .format("%H")
        .to_string()
        .parse::<u32>()
        .unwrap();
    let expr = gen_expr(rng, near.then_some(local_hour));
    let mut case = Case { expr, tz, after };
    // Sometimes start exactly on one of our firings, to exercise "strictly after".
    if rng.gen_bool(0.1)
        && let Ok(expr) = CronExpr::parse(&case.expr)
        && let Some(t) = next_after(&expr, DateTime::from_timestamp(after, 0).unwrap(), tz)
    {
        case.after = t.timestamp();
    }
    case
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn gen_expr(rng: &mut StdRng, near_hour: Option<u32>) -> String {
    if rng.gen_bool(0.02) {
        let macros = [
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ];
        return macros[rng.gen_range(0..macros.len())].to_owned();
    }
    let minute = if rng.gen_bool(0.3) {
        ["0", "30", "*/15", "*", "0,30", "45", "59"][rng.gen_range(0..7)].to_owned()
    } else {
        gen_field(rng, 0, 59, None)
    };
    let hour = match near_hour {
        Some(h) if rng.gen_bool(0.6) => {
            let around = |d: i32| ((h as i32 + d).rem_euclid(24)).to_string();
            match rng.gen_range(0..5) {
                0 => around(0),
                1 => around(-1),
                2 => around(1),
                3 => format!("{},{}", around(-1), around(1)),
                _ => format!("{}-{}", (h as i32 - 2).max(0), (h as i32 + 2).min(23)),
            }
        }
        _ => gen_field(rng, 0, 23, None),
    };
    let (dom, month, dow) = if near_hour.is_some() && rng.gen_bool(0.6) {
        ("*".to_owned(), "*".to_owned(), "*".to_owned())
    } else {
        let dom = if rng.gen_bool(0.06) {
            ["1-31", "*/1"][rng.gen_range(0..2)].to_owned()
        } else {
            gen_field(rng, 1, 31, None)
        };
        let dow = if rng.gen_bool(0.06) {
            [
                "0-6", "0-7", "*/1", "SUN-SAT", "MON-SUN", "1-7", "FRI-SUN", "5-0", "sat-sun",
            ][rng.gen_range(0..9)]
            .to_owned()
        } else {
            gen_field(rng, 0, 7, Some((&DAYS, 0)))
        };
        (dom, gen_field(rng, 1, 12, Some((&MONTHS, 1))), dow)
    };
    format!("{minute} {hour} {dom} {month} {dow}")
}

/// One field: `*`, a value, a range, a step or a list of those; values sometimes as names.
fn gen_field(rng: &mut StdRng, min: u32, max: u32, names: Option<(&[&str], u32)>) -> String {
    if rng.gen_bool(0.4) {
        return "*".to_owned();
    }
    let parts = if rng.gen_bool(0.2) {
        rng.gen_range(2..=3)
    } else {
        1
    };
    let value = |rng: &mut StdRng, v: u32| match names {
        Some((names, base)) if rng.gen_bool(0.3) && ((v - base) as usize) < names.len() => {
            let name = names[(v - base) as usize];
            if rng.gen_bool(0.5) {
                name.to_lowercase()
            } else {
                name.to_owned()
            }
        }
        _ => v.to_string(),
    };
    let span = max - min + 1;
    (0..parts)
        .map(|_| {
            let a = rng.gen_range(min..max);
            let b = rng.gen_range(a + 1..=max);
            let step = rng.gen_range(1..=span.min(20));
            let single = rng.gen_range(min..=max);
            match rng.gen_range(0..11) {
                0..=3 => value(rng, single),
                4 | 5 => format!("{}-{}", value(rng, a), value(rng, b)),
                6 | 7 => format!("*/{step}"),
                8 => format!("{}-{}/{step}", value(rng, a), value(rng, b)),
                9 => format!("{}/{step}", value(rng, a)),
                // Rarely an equal range, which croniter reads as the whole range.
                _ if rng.gen_bool(0.8) => value(rng, single),
                _ if rng.gen_bool(0.5) => format!("{}-{}", value(rng, a), value(rng, a)),
                _ => format!("{}-{}/{step}", value(rng, a), value(rng, a)),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap()
}

/// The zone's UTC-offset changes between `FIRST_YEAR` and `LAST_YEAR`, as Unix seconds.
fn transitions(tz: Tz) -> Vec<i64> {
    let offset = |t: i64| {
        tz.offset_from_utc_datetime(&DateTime::from_timestamp(t, 0).unwrap().naive_utc())
            .fix()
            .local_minus_utc()
    };
    let start = Utc
        .with_ymd_and_hms(FIRST_YEAR, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let end = Utc
        .with_ymd_and_hms(LAST_YEAR, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let mut found = Vec::new();
    let mut t = start;
    while t < end {
        let next = t + 86_400;
        if offset(t) != offset(next) {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(t) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            found.push(hi);
        }
        t = next;
    }
    found
}

fn near_any(changes: &[i64], t: i64, within: i64) -> bool {
    let i = changes.partition_point(|c| *c < t);
    [i.checked_sub(1), Some(i)]
        .into_iter()
        .flatten()
        .filter_map(|i| changes.get(i))
        .any(|c| (c - t).abs() <= within)
}

/// Whether the oracle can run: the interpreter starts and imports croniter and tzdata (the
/// script exits 3 when it cannot). Any other failure is left to the test proper to report.
fn probe_oracle() -> Result<(), String> {
    let python = oracle_python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/croniter_oracle.py"
    );
    let output = Command::new(&python)
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {python} ({e}); run scripts/setup/cron-oracle.sh"))?;
    if output.status.code() == Some(3) {
        return Err(format!(
            "{python} cannot import croniter/tzdata; run scripts/setup/cron-oracle.sh"
        ));
    }
    Ok(())
}

/// `CRON_ORACLE_PYTHON`, else the environment `scripts/setup/cron-oracle.sh` makes, else `python3`.
fn oracle_python() -> String {
    if let Ok(python) = std::env::var("CRON_ORACLE_PYTHON") {
        return python;
    }
    let cache = std::env::var("CAMBOT_CACHE_DIR").ok().or_else(|| {
        std::env::var("HOME")
            .ok()
            .map(|home| format!("{home}/.cache/cambot"))
    });
    cache
        .map(|dir| format!("{dir}/cron-oracle-venv/bin/python"))
        .filter(|python| std::path::Path::new(python).exists())
        .unwrap_or_else(|| "python3".to_owned())
}

fn env_number(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let raw = raw.trim();
    match raw.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => raw.parse().ok(),
    }
}
