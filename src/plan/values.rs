//! Parsing and checking scalar values. Each parser returns the value or a
//! message and a hint; the caller attaches the span.

use std::net::Ipv4Addr;

pub struct Bad {
    pub message: String,
    pub help: Option<String>,
}

fn bad(message: impl Into<String>, help: Option<&str>) -> Bad {
    Bad { message: message.into(), help: help.map(str::to_string) }
}

/// The largest size a project may give (1 PiB): far above any disk or
/// memory, far below where byte counts overflow downstream.
pub const MAX_SIZE_BYTES: u64 = 1 << 50;

/// A size in bytes from `250M`, `1.5G`, `512K`, `4096b` (binary units),
/// computed exactly in integers: no float rounding, no wrap-around.
pub fn size(s: &str) -> Result<u64, Bad> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit {
        "b" | "B" => 1,
        "K" | "k" | "kB" | "KB" | "KiB" => 1 << 10,
        "M" | "m" | "MB" | "MiB" => 1 << 20,
        "G" | "g" | "GB" | "GiB" => 1 << 30,
        "T" | "t" | "TB" | "TiB" => 1 << 40,
        "" => {
            return Err(bad(
                format!("size `{s}` has no unit"),
                Some("write the unit: b, K, M or G (binary), e.g. `64M`"),
            ))
        }
        u => return Err(bad(format!("unknown size unit `{u}`"), Some("units are b, K/kB/KB, M/MB, G/GB (binary)"))),
    };
    let not_a_size = || bad(format!("`{s}` is not a size"), Some("a size is a number and a unit, e.g. `700M`"));
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(not_a_size());
    }
    let too_large = || bad(format!("size `{s}` is too large"), Some("the largest size is 1024T (1 PiB)"));
    // Digits only, so a failed parse is an overflow.
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| too_large())? };
    // Fraction digits past the 18th cannot change a byte count under 1 PiB.
    let frac = &frac[..frac.len().min(18)];
    let scale = 10u128.pow(frac.len() as u32);
    let part: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| not_a_size())? };
    let mult = u128::from(mult);
    let bytes = whole
        .checked_mul(mult)
        .and_then(|b| b.checked_add((part * mult + scale / 2) / scale))
        .filter(|b| *b <= u128::from(MAX_SIZE_BYTES))
        .ok_or_else(too_large)?;
    Ok(u64::try_from(bytes).expect("at most MAX_SIZE_BYTES"))
}

/// Whole MiB, rounded up.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

pub fn ipv4(s: &str) -> Result<Ipv4Addr, Bad> {
    s.parse().map_err(|_| bad(format!("`{s}` is not an IPv4 address"), Some("write four numbers 0-255, e.g. `10.0.0.2`")))
}

/// A netmask as `255.255.255.0`, `24` or `/24`.
pub fn netmask(s: &str) -> Result<Ipv4Addr, Bad> {
    let prefix = s.strip_prefix('/').unwrap_or(s);
    if let Ok(p) = prefix.parse::<u32>() {
        if p <= 32 {
            return Ok(Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) }));
        }
        return Err(bad(format!("prefix length {p} is over 32"), None));
    }
    let m: Ipv4Addr = s.parse().map_err(|_| bad(format!("`{s}` is not a netmask"), Some("write e.g. `255.255.255.0` or `/24`")))?;
    let bits = u32::from(m);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(bad(format!("`{s}` is not a valid netmask"), Some("a netmask's one bits must be contiguous, e.g. 255.255.255.0")));
    }
    Ok(m)
}

/// A unicast MAC address, normalised to lower-case with colons.
pub fn mac(s: &str) -> Result<String, Bad> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(bad(format!("`{s}` is not a MAC address"), Some("write six hex pairs, e.g. `52:54:00:12:34:56`")));
    }
    let first = u8::from_str_radix(parts[0], 16).expect("checked hex");
    if first & 1 == 1 {
        return Err(bad(format!("`{s}` is a multicast MAC address"), Some("the first byte must be even for a network card")));
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

/// A crypt(3) hash: DES (13 characters), or `$id$...` (MD5, bcrypt,
/// SHA-256/512, yescrypt, scrypt); `!` or `*` in front lock the account.
pub fn crypt_hash(s: &str) -> Result<(), Bad> {
    let h = s.trim_start_matches(['!', '*']);
    if h.is_empty() && !s.is_empty() {
        return Ok(()); // "!" or "*": no password login
    }
    let salt_chars = |t: &str| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '/');
    let des = h.len() == 13 && salt_chars(h);
    let modular = h.starts_with('$') && {
        let parts: Vec<&str> = h.split('$').collect();
        let ids = ["1", "2a", "2b", "2y", "5", "6", "y", "gy", "7", "sha1", "md5"];
        parts.len() >= 4 && ids.contains(&parts[1]) && parts.last().is_some_and(|p| !p.is_empty())
    };
    if des || modular {
        Ok(())
    } else {
        Err(bad(
            "this looks like a plain-text password, not a crypt hash",
            Some("store a hash, never the password: make one with `openssl passwd -6` or `mkpasswd -m sha-512`"),
        ))
    }
}

/// Checks a value against a declared type (for plugin blocks, whose
/// values mln passes on as text).
pub fn check(ty: crate::schema::Ty, s: &str) -> Result<(), Bad> {
    use crate::schema::Ty;
    match ty {
        Ty::Text | Ty::Words => Ok(()),
        Ty::Int => uint(s).map(drop),
        Ty::Size => size(s).map(drop),
        Ty::Ipv4 => ipv4(s).map(drop),
        Ty::Address if s == "dhcp" => Ok(()),
        Ty::Address => ipv4(s).map(drop),
        Ty::Netmask => netmask(s).map(drop),
        Ty::Mac => mac(s).map(drop),
        Ty::Hash => crypt_hash(s),
        Ty::Term if ["xterm", "screen", "none"].contains(&s) => Ok(()),
        Ty::Term => Err(bad(format!("unknown terminal `{s}`"), Some("use `xterm`, `screen` or `none`"))),
        Ty::Name if !s.is_empty() && !s.contains(char::is_whitespace) => Ok(()),
        Ty::Name => Err(bad(format!("`{s}` is not a name"), Some("a name is one word"))),
    }
}

pub fn uint(s: &str) -> Result<u64, Bad> {
    s.parse().map_err(|_| bad(format!("`{s}` is not a whole number"), None))
}

/// Why a number was refused: not a number at all, or outside its range.
pub enum NumberError {
    NotANumber(Bad),
    OutOfRange(Bad),
}

impl NumberError {
    pub fn code(&self) -> &'static str {
        match self {
            NumberError::NotANumber(_) => "mln::value::number",
            NumberError::OutOfRange(_) => "mln::value::range",
        }
    }
    pub fn into_bad(self) -> Bad {
        match self {
            NumberError::NotANumber(b) | NumberError::OutOfRange(b) => b,
        }
    }
}

/// A whole number in `lo..=hi`; `what` names it in the message and `why`
/// says where the bounds come from.
pub fn uint_in(s: &str, lo: u64, hi: u64, what: &str, why: &str) -> Result<u64, NumberError> {
    let out_of_range = || {
        NumberError::OutOfRange(bad(format!("{what} `{s}` is out of range: it must be from {lo} to {hi}"), Some(why)))
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: a failed parse is a number past u64.
        let n: u64 = s.parse().map_err(|_| out_of_range())?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(out_of_range())
        }
    } else {
        Err(NumberError::NotANumber(bad(format!("`{s}` is not a whole number"), None)))
    }
}

pub fn octal_mode(s: &str) -> Result<(), Bad> {
    if (3..=4).contains(&s.len()) && s.chars().all(|c| ('0'..='7').contains(&c)) {
        Ok(())
    } else {
        Err(bad(format!("`{s}` is not a file mode"), Some("write an octal mode such as 0644")))
    }
}

/// The MAC of an interface without one: a hash of project, host and
/// interface, so a rebuild keeps it. `02` marks it locally administered.
pub fn derived_mac(project: &str, host: &str, iface: &str, salt: u32) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{project}/{host}/{iface}/{salt}").as_bytes());
    format!("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", d[0], d[1], d[2], d[3], d[4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size("64M").ok(), Some(64 << 20));
        assert_eq!(size("1.5G").ok(), Some(3 << 29));
        assert_eq!(size("512kB").ok(), Some(512 << 10));
        assert_eq!(size("4096b").ok(), Some(4096));
        assert!(size("64").is_err());
        assert!(size("64Q").is_err());
        assert!(size("M").is_err());
        assert_eq!(size(".5K").ok(), Some(512));
        assert_eq!(size("0.0000001b").ok(), Some(0));
        assert!(size("1.2.3M").is_err());
        assert!(size(".M").is_err());
    }

    #[test]
    fn sizes_never_wrap() {
        assert_eq!(size("1024T").ok(), Some(MAX_SIZE_BYTES));
        assert!(size("1025T").is_err());
        assert!(size("99999999999999T").is_err());
        assert!(size("18446744073709551616b").is_err());
        assert!(size(&format!("{}M", "9".repeat(60))).is_err());
        assert!(size(&format!("1.{}G", "9".repeat(60))).is_ok());
    }

    #[test]
    fn numbers_in_ranges() {
        assert_eq!(uint_in("4", 1, 1024, "vcpus", "").ok(), Some(4));
        for bad in ["0", "1025", "4294967297", "18446744073709551616", "99999999999999999999999"] {
            assert!(matches!(uint_in(bad, 1, 1024, "vcpus", ""), Err(NumberError::OutOfRange(_))), "{bad}");
        }
        for bad in ["", "-1", "+1", "1.0", "two", " 1"] {
            assert!(matches!(uint_in(bad, 1, 1024, "vcpus", ""), Err(NumberError::NotANumber(_))), "{bad:?}");
        }
    }

    #[test]
    fn netmasks_must_be_contiguous() {
        assert_eq!(netmask("/24").ok(), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(netmask("255.255.254.0").ok(), Some(Ipv4Addr::new(255, 255, 254, 0)));
        assert!(netmask("255.0.255.0").is_err());
        assert!(netmask("33").is_err());
    }

    #[test]
    fn macs_are_unicast_and_normalised() {
        assert_eq!(mac("52-54-00-AB-cd-01").ok().as_deref(), Some("52:54:00:ab:cd:01"));
        assert!(mac("01:00:5e:00:00:01").is_err());
        assert!(mac("52:54:00:ab:cd").is_err());
    }

    #[test]
    fn crypt_hashes_and_plain_text() {
        assert!(crypt_hash("VUmaegY1g8q4I").is_ok());
        assert!(crypt_hash("$6$salt$abcdefghijklmnop").is_ok());
        assert!(crypt_hash("$y$j9T$salt$hash").is_ok());
        assert!(crypt_hash("!").is_ok());
        assert!(crypt_hash("secret").is_err());
        assert!(crypt_hash("jflaA/623(JBGS").is_err());
    }

    #[test]
    fn derived_macs_are_stable_and_local() {
        let a = derived_mac("p", "h", "eth0", 0);
        assert_eq!(a, derived_mac("p", "h", "eth0", 0));
        assert_ne!(a, derived_mac("p", "h", "eth1", 0));
        assert!(a.starts_with("02:"));
    }
}
