//! What of an object besides its bytes a replica carries: its version
//! history (`--versions`, `--versions-at`) and its tags (`--tags`).

use super::{cfg_err, ConfigError};

/// Which versions of each source key are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionsMode {
    /// The current version only (reads pinned to its version id).
    #[default]
    Latest,
    /// The history, replayed oldest first, delete markers included: from
    /// the version current at `since` (ms since the epoch) on, or all of it.
    All {
        /// Where the replayed history starts.
        since: Option<i64>,
    },
}

impl VersionsMode {
    /// Parses `--versions` and `--versions-at`.
    pub fn parse(versions: Option<&str>, at: Option<&str>) -> Result<Self, ConfigError> {
        let since = at.map(|t| parse_time("--versions-at", t, false)).transpose()?;
        match (
            versions.unwrap_or(if since.is_some() { "all" } else { "latest" }),
            since,
        ) {
            ("latest", None) => Ok(VersionsMode::Latest),
            ("latest", Some(_)) => Err(cfg_err(
                "--versions-at",
                "replays history: it needs --versions all (or no --versions)",
            )),
            ("all", since) => Ok(VersionsMode::All { since }),
            (other, _) => Err(cfg_err("--versions", format!("{other:?}: expected latest or all"))),
        }
    }

    /// Whether histories are replayed.
    pub fn replays(self) -> bool {
        matches!(self, VersionsMode::All { .. })
    }
}

/// A time as `setting` takes it, in ms since the epoch: RFC 3339
/// (`2026-11-30T08:00:00Z`, UTC when no offset is given) or a date
/// (`2026-11-30`, midnight UTC); with `ages`, also an age (`7d`, `12h`):
/// that long before now.
pub(crate) fn parse_time(setting: &str, s: &str, ages: bool) -> Result<i64, ConfigError> {
    let t = s.trim();
    if ages {
        if let Ok(age) = humantime::parse_duration(t) {
            let now = crate::now_millis();
            return Ok(now.saturating_sub(age.as_millis().min(i64::MAX as u128) as i64));
        }
    }
    let hint = match ages {
        true => "give 2026-11-30, 2026-11-30T08:00:00Z (UTC) or an age like 7d",
        false => "give 2026-11-30 or 2026-11-30T08:00:00Z (UTC)",
    };
    let full = if t.len() == 10 {
        format!("{t}T00:00:00Z")
    } else {
        t.to_string()
    };
    let parsed = humantime::parse_rfc3339_weak(full.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(&full))
        .map_err(|_| cfg_err(setting, format!("{s:?} is not a time: {hint}")))?;
    let since = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| cfg_err(setting, format!("{s:?} is before 1970")))?;
    Ok(since.as_millis() as i64)
}

/// Which tags destination objects get.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TagMode {
    /// The source object's tags (one GetObjectTagging for objects that have
    /// any; a server-side copy keeps them by itself).
    #[default]
    Copy,
    /// No tags.
    None,
    /// These tags on every object.
    Set(Vec<(String, String)>),
}

impl TagMode {
    /// Parses `--tags copy|none|k=v,k2=v2`.
    pub fn parse(s: Option<&str>) -> Result<Self, ConfigError> {
        let Some(s) = s.map(str::trim) else {
            return Ok(TagMode::Copy);
        };
        match s {
            "copy" | "" => return Ok(TagMode::Copy),
            "none" => return Ok(TagMode::None),
            _ => {}
        }
        let mut tags = Vec::new();
        for pair in s.split(',') {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                cfg_err(
                    "--tags",
                    format!("{pair:?}: expected copy, none, or KEY=VALUE pairs separated by commas"),
                )
            })?;
            let k = k.trim();
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                return Err(cfg_err(
                    "--tags",
                    format!("{pair:?}: a tag key is 1 to 128 characters, a value at most 256"),
                ));
            }
            tags.push((k.to_string(), v.trim().to_string()));
        }
        if tags.len() > 10 {
            return Err(cfg_err(
                "--tags",
                format!("{} tags given: S3 keeps at most 10 per object", tags.len()),
            ));
        }
        Ok(TagMode::Set(tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_modes_parse() {
        assert_eq!(VersionsMode::parse(None, None).unwrap(), VersionsMode::Latest);
        assert_eq!(
            VersionsMode::parse(Some("all"), None).unwrap(),
            VersionsMode::All { since: None }
        );
        assert_eq!(
            VersionsMode::parse(None, Some("2026-11-30")).unwrap(),
            VersionsMode::All {
                since: Some(1_795_996_800_000)
            }
        );
        assert_eq!(
            VersionsMode::parse(Some("all"), Some("2026-11-30T08:00:00Z")).unwrap(),
            VersionsMode::All {
                since: Some(1_795_996_800_000 + 8 * 3_600_000)
            }
        );
        let e = VersionsMode::parse(Some("latest"), Some("2026-11-30")).unwrap_err();
        assert!(e.to_string().contains("--versions all"), "{e}");
        let e = VersionsMode::parse(Some("every"), None).unwrap_err();
        assert!(e.to_string().contains("expected latest or all"), "{e}");
        let e = VersionsMode::parse(None, Some("yesterday")).unwrap_err();
        assert!(
            e.to_string().starts_with("--versions-at: \"yesterday\" is not a time"),
            "{e}"
        );
    }

    #[test]
    fn times_parse_as_dates_instants_and_ages() {
        assert_eq!(parse_time("--x", "2026-11-30", false).unwrap(), 1_795_996_800_000);
        let week = crate::now_millis() - parse_time("--x", "7d", true).unwrap();
        assert!(
            (7 * 86_400_000 - 5_000..=7 * 86_400_000 + 5_000).contains(&week),
            "{week}"
        );
        let e = parse_time("--versions-at", "7d", false).unwrap_err().to_string();
        assert!(e.starts_with("--versions-at: \"7d\" is not a time"), "{e}");
    }

    #[test]
    fn tag_modes_parse() {
        assert_eq!(TagMode::parse(None).unwrap(), TagMode::Copy);
        assert_eq!(TagMode::parse(Some("none")).unwrap(), TagMode::None);
        assert_eq!(
            TagMode::parse(Some("team=data, tier = cold")).unwrap(),
            TagMode::Set(vec![("team".into(), "data".into()), ("tier".into(), "cold".into())])
        );
        let e = TagMode::parse(Some("team")).unwrap_err();
        assert!(e.to_string().contains("KEY=VALUE"), "{e}");
        let many = (0..11).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        assert!(TagMode::parse(Some(&many))
            .unwrap_err()
            .to_string()
            .contains("at most 10"));
    }
}
