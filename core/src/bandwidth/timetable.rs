//! Rates and timetables as users write them (see [`super`]).

use chrono::{Datelike, NaiveDateTime, Timelike};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const WEEK: u32 = 7 * 24 * 60;

/// Parses a rate: bytes per second, `None` for `off`. `B K M G T` (either
/// case) are powers of 1024; a bare number is KiB/s, as in rclone.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix("/s").unwrap_or(&unit);
    let scale: u64 = match unit {
        "b" => 1,
        "" | "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?} is not a rate like 512k, 10M, 1.5G or off")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a rate like 512k, 10M, 1.5G or off"))?;
    let bytes = (n * scale as f64).round();
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{s:?}: a rate must be at least 1 byte per second (or off)"));
    }
    Ok(Some(bytes as u64))
}

/// A rate for messages: `4 MiB/s`, or `off`.
pub fn format_rate(rate: Option<u64>) -> String {
    match rate {
        Some(r) => format!("{}/s", bytesize::ByteSize::b(r).display().iec()),
        None => "off".into(),
    }
}

/// A limit by time of week. Built from its text with `parse`; `Display`
/// gives the text back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timetable {
    text: String,
    /// (minute of the week from Monday 00:00, rate), sorted by minute.
    slots: Vec<(u32, Option<u64>)>,
}

impl std::fmt::Display for Timetable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Timetable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return Err(
                "the limit is empty: give a rate like 10M, a timetable like \"08:00,1M 18:00,off\", or off".into(),
            );
        }
        if !text.contains(',') {
            let rate = parse_rate(&text)?;
            return Ok(Timetable {
                text,
                slots: vec![(0, rate)],
            });
        }
        // Daily entries first, so a weekday's own entry at the same minute wins.
        let mut daily = Vec::new();
        let mut weekly = Vec::new();
        for entry in text.split(' ') {
            let (when, rate) = entry
                .split_once(',')
                .ok_or_else(|| format!("{entry:?}: a timetable entry is TIME,RATE like 08:00,1M or Mon-08:00,1M"))?;
            let rate = parse_rate(rate)?;
            let (day, time) = match when.split_once('-') {
                Some((d, t)) => (Some(day_index(d, entry)?), t),
                None => (None, when),
            };
            let minute = minute_of_day(time, entry)?;
            match day {
                Some(d) => weekly.push((d * 24 * 60 + minute, rate)),
                None => daily.extend((0..7).map(|d| (d * 24 * 60 + minute, rate))),
            }
        }
        let mut slots = daily;
        slots.extend(weekly);
        slots.sort_by_key(|(m, _)| *m);
        Ok(Timetable { text, slots })
    }
}

fn day_index(d: &str, entry: &str) -> Result<u32, String> {
    let d = d.to_ascii_lowercase();
    DAYS.iter()
        .zip(FULL_DAYS)
        .position(|(short, full)| d == *short || d == full)
        .map(|i| i as u32)
        .ok_or_else(|| format!("{entry:?}: {d:?} is not a weekday (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn minute_of_day(time: &str, entry: &str) -> Result<u32, String> {
    let bad = || format!("{entry:?}: {time:?} is not a time of day like 08:00 or 23:30");
    let (h, m) = time.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || time.len() > 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Timetable {
    /// The rate now (local time), bytes per second; `None` when off.
    pub fn rate_now(&self) -> Option<u64> {
        self.rate_at(chrono::Local::now().naive_local())
    }

    /// The rate at local time `t`, bytes per second; `None` when off.
    pub fn rate_at(&self, t: NaiveDateTime) -> Option<u64> {
        let now = t.weekday().num_days_from_monday() * 24 * 60 + t.hour() * 60 + t.minute();
        debug_assert!(now < WEEK);
        self.slots
            .iter()
            .rev()
            .find(|(m, _)| *m <= now)
            .or(self.slots.last())
            .and_then(|(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    #[test]
    fn rates_are_read_as_rclone_reads_them() {
        assert_eq!(parse_rate("512k"), Ok(Some(512 * 1024)));
        assert_eq!(parse_rate("10M"), Ok(Some(10 << 20)));
        assert_eq!(parse_rate("1.5G"), Ok(Some(3 << 29)));
        assert_eq!(parse_rate("100"), Ok(Some(100 * 1024)), "KiB when no unit is given");
        assert_eq!(parse_rate("2000B"), Ok(Some(2000)));
        assert_eq!(parse_rate("4MiB/s"), Ok(Some(4 << 20)));
        assert_eq!(parse_rate("OFF"), Ok(None));
        for bad in ["", "fast", "10X", "0", "-1M", "1..2M"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} is refused");
        }
        assert_eq!(format_rate(Some(4 << 20)), "4.0 MiB/s");
    }

    #[test]
    fn a_timetable_holds_each_rate_until_the_next_entry_and_wraps() {
        let t: Timetable = "08:00,512k 12:00,10M  23:00,off".parse().unwrap();
        assert_eq!(t.to_string(), "08:00,512k 12:00,10M 23:00,off");
        // 2026-12-02 is a Wednesday.
        assert_eq!(t.rate_at(at(2026, 12, 2, 7, 59)), None, "before 08:00: the night's off");
        assert_eq!(t.rate_at(at(2026, 12, 2, 8, 0)), Some(512 * 1024));
        assert_eq!(t.rate_at(at(2026, 12, 2, 11, 59)), Some(512 * 1024));
        assert_eq!(t.rate_at(at(2026, 12, 2, 12, 0)), Some(10 << 20));
        assert_eq!(t.rate_at(at(2026, 12, 2, 23, 0)), None);
        assert_eq!(
            t.rate_at(at(2026, 11, 30, 0, 5)),
            None,
            "Monday morning wraps to Sunday night"
        );
    }

    #[test]
    fn weekday_entries_apply_on_their_day_and_win_over_daily_ones() {
        let t: Timetable = "00:00,1M Sat-00:00,off Mon-09:00,2M".parse().unwrap();
        assert_eq!(t.rate_at(at(2026, 12, 5, 12, 0)), None, "Saturday");
        assert_eq!(t.rate_at(at(2026, 12, 6, 12, 0)), Some(1 << 20), "Sunday's daily entry");
        assert_eq!(t.rate_at(at(2026, 11, 30, 8, 0)), Some(1 << 20), "Monday before 09:00");
        assert_eq!(t.rate_at(at(2026, 11, 30, 9, 0)), Some(2 << 20), "Monday from 09:00");
        assert_eq!(t.rate_at(at(2026, 12, 1, 9, 0)), Some(1 << 20), "Tuesday: daily again");
        let constant: Timetable = "4M".parse().unwrap();
        assert_eq!(constant.rate_at(at(2026, 12, 3, 3, 3)), Some(4 << 20));
    }

    #[test]
    fn bad_timetables_name_the_entry() {
        for (text, needle) in [
            ("08:00", "not a rate"),
            ("25:00,1M", "\"25:00,1M\""),
            ("Xyz-08:00,1M", "not a weekday"),
            ("08:00,1M 12:00", "TIME,RATE"),
            ("   ", "empty"),
        ] {
            let e = text.parse::<Timetable>().unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
