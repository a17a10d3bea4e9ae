//! The coordinate records of a PDB file, read line by line in the format's fixed columns
//! (wwPDB format v3.3, "ATOM" and "HETATM"), each kept with its own line number.
//!
//! Why not pdbtbx for PDB text: it decodes serial and residue numbers as plain decimals (so
//! files with more than 99,999 atoms, written with hybrid-36 serials, fail), it aborts the
//! process on some malformed lines instead of returning an error, and an atom read through its
//! hierarchy no longer knows its line. This reader needs each record's line: the element,
//! the error messages and the duplicate-serial files that SPI's large particles produce all
//! depend on it. The format is a handful of fixed columns, so reading it is short; mmCIF still
//! goes through pdbtbx (see the parent module).
//!
//! Reading is lenient where real files differ (trailing blanks stripped, element column
//! missing, charge written "+2" or "2+", occupancy missing) and strict where a value decides
//! the result: coordinates, occupancy, element, serial and residue numbers must each read as
//! what the format says, or the error names the file, the line, the columns and what to do.

use super::super::form_factor::FormFactor;

/// Largest |coordinate| accepted, Å. The PDB format's 8.3 columns cannot hold more, and no
/// particle imaged by SPI is within orders of magnitude of 10 µm.
pub const MAX_COORDINATE: f64 = 1e5;

/// Where an atom came from, for messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// 1-based line of a PDB file.
    Line(usize),
    /// Serial number and atom name (mmCIF, read through pdbtbx, which keeps no lines).
    Atom(usize, String),
}

/// One ATOM/HETATM record as the file states it.
#[derive(Clone, Debug)]
pub struct AtomRecord {
    pub origin: Origin,
    pub hetero: bool,
    /// Atom name, trimmed (e.g. "CA").
    pub name: String,
    /// Alternate location indicator; None when blank.
    pub altloc: Option<String>,
    /// Residue name, trimmed (e.g. "SER", "HOH").
    pub residue: String,
    /// Chain identifier; empty when the column is blank.
    pub chain: String,
    /// Residue sequence number (hybrid-36 decoded) and insertion code.
    pub residue_number: i64,
    pub insertion: Option<char>,
    pub position: [f64; 3],
    pub occupancy: f64,
    /// Element symbol as written or as inferred from the atom name.
    pub element: String,
    pub charge: i32,
}

/// The coordinate records of the first model, in file order; `file` names the file in errors.
/// A file without MODEL records is one model. Reading stops at the first ENDMDL or END.
pub fn read_pdb_records(file: &str, text: &str) -> anyhow::Result<Vec<AtomRecord>> {
    let mut records = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_number = i + 1;
        let line = raw.trim_end_matches(['\r', '\n']);
        let record = line.get(..6).unwrap_or(line).trim_end();
        match record {
            "ATOM" | "HETATM" => records.push(parse_atom_line(file, line_number, line)?),
            "ENDMDL" | "END" => break,
            _ => {}
        }
    }
    Ok(records)
}

/// One ATOM/HETATM line → a record, or an error naming the line and the columns.
fn parse_atom_line(file: &str, line_number: usize, line: &str) -> anyhow::Result<AtomRecord> {
    let here = || format!("{file}, line {line_number}");
    if !line.is_ascii() || line.bytes().any(|b| b.is_ascii_control()) {
        anyhow::bail!(
            "{}: non-ASCII or control characters (e.g. a tab) in a coordinate record: {line:?}. \
             PDB records are fixed-column ASCII text; the file is damaged or not a PDB file",
            here()
        );
    }
    if line.len() < 54 {
        anyhow::bail!(
            "{}: coordinate record is truncated ({} columns; x, y, z need columns 31–54). \
             The file is damaged — download it again",
            here(),
            line.len()
        );
    }
    let padded = format!("{line:<80}");
    let col = |range: std::ops::Range<usize>| padded[range].trim();
    let mut position = [0.0; 3];
    for (axis, (name, cols)) in [("x", 30..38), ("y", 38..46), ("z", 46..54)].into_iter().enumerate() {
        let field = col(cols.clone());
        position[axis] = match field.parse::<f64>() {
            // Real. 8.3: the point in the field's 5th column and three decimals. Checking it
            // catches a character lost or added earlier in the line, which shifts every
            // field and would otherwise still read as numbers, just the wrong ones.
            Ok(v) if v.is_finite() && v.abs() < MAX_COORDINATE && !is_8_3(&padded[cols.clone()]) => anyhow::bail!(
                "{}: {name} coordinate in columns {}–{} is {:?}; the format puts its decimal point in column {} \
                 with three decimals (8.3). The columns are shifted (a character missing or extra earlier in the \
                 line) or the file is damaged",
                here(),
                cols.start + 1,
                cols.end,
                &padded[cols.clone()],
                cols.start + 5
            ),
            Ok(v) if v.is_finite() && v.abs() < MAX_COORDINATE => v,
            Ok(v) if v.is_finite() => anyhow::bail!(
                "{}: {name} coordinate in columns {}–{} is {v:e} Å, beyond ±{MAX_COORDINATE:e} Å (no PDB coordinate \
                 record can hold it, and no particle is that large); the file is damaged",
                here(),
                cols.start + 1,
                cols.end
            ),
            _ => anyhow::bail!(
                "{}: {name} coordinate in columns {}–{} is {field:?}, not a number",
                here(),
                cols.start + 1,
                cols.end
            ),
        };
    }
    let serial = col(6..11);
    if !serial.is_empty() && hy36_decode(5, &padded[6..11]).is_none() {
        anyhow::bail!(
            "{}: serial number in columns 7–11 is {serial:?}, neither a decimal nor a hybrid-36 number \
             (e.g. \"A0000\"); the columns are shifted or the file is damaged",
            here()
        );
    }
    let residue_number = if col(22..26).is_empty() {
        0
    } else {
        hy36_decode(4, &padded[22..26]).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: residue number in columns 23–26 is {:?}, neither a decimal nor a hybrid-36 number \
                 (e.g. \"A000\"); the columns are shifted or the file is damaged",
                here(),
                col(22..26)
            )
        })?
    };
    let occupancy = match col(54..60) {
        "" => 1.0,
        field => match field.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => anyhow::bail!(
                "{}: occupancy in columns 55–60 is {field:?}, not a number; it decides which alternate \
                 location is kept. Fix the column or blank it (blank reads as 1.0)",
                here()
            ),
        },
    };
    let name_field = &padded[12..16];
    let element = match col(76..78) {
        e if !e.is_empty() && e.chars().all(|c| c.is_ascii_alphabetic()) => e.to_string(),
        e if !e.chars().all(|c| c.is_ascii_alphanumeric()) => anyhow::bail!(
            "{}: element in columns 77–78 is {e:?}, not an element symbol; the columns are shifted or the \
             file is damaged",
            here()
        ),
        _ => {
            let inferred = element_from_atom_name(name_field);
            if inferred.is_empty() {
                anyhow::bail!(
                    "{}: no element in columns 77–78 and none can be read from the atom name {:?}. \
                     Add the element symbol in columns 77–78",
                    here(),
                    name_field.trim()
                );
            }
            inferred
        }
    };
    let charge = parse_charge(col(78..80)).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: charge field (columns 79–80) is {:?}; expected e.g. \"2+\" or \"1-\"",
            here(),
            col(78..80)
        )
    })?;
    let altloc = col(16..17);
    let insertion = padded.as_bytes()[26];
    Ok(AtomRecord {
        origin: Origin::Line(line_number),
        hetero: line.starts_with("HETATM"),
        name: name_field.trim().to_string(),
        altloc: (!altloc.is_empty()).then(|| altloc.to_string()),
        residue: col(17..20).to_string(),
        chain: col(21..22).to_string(),
        residue_number,
        insertion: (insertion != b' ').then_some(insertion as char),
        position,
        occupancy,
        element,
        charge,
    })
}

/// An 8-column field in the format's Real(8.3) layout: `....d.ddd` right-justified, the
/// decimal point in the field's fifth column.
fn is_8_3(field: &str) -> bool {
    let b = field.as_bytes();
    b.len() == 8 && b[4] == b'.' && b[5..].iter().all(u8::is_ascii_digit)
}

/// Hybrid-36 (Grosse-Kunstleve, cctbx `hybrid_36`; the wwPDB's encoding of serials above
/// 99,999 and residue numbers above 9,999): a field of `width` characters holds a decimal
/// number (right-justified, may be negative) while it fits, then base-36 numbers starting at
/// "A000…" (upper case digits, = 10^width) and then at "a000…" (lower case). None when the
/// field is neither.
pub fn hy36_decode(width: usize, field: &str) -> Option<i64> {
    if field.len() != width || width == 0 {
        return None;
    }
    let first = field.as_bytes()[0];
    if first == b' ' || first == b'-' || first.is_ascii_digit() {
        let t = field.trim();
        return if t.is_empty() { None } else { t.parse::<i64>().ok() };
    }
    let upper = first.is_ascii_uppercase();
    if !(upper || first.is_ascii_lowercase()) {
        return None;
    }
    let mut value: i64 = 0;
    for c in field.bytes() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' if upper => c - b'A' + 10,
            b'a'..=b'z' if !upper => c - b'a' + 10,
            _ => return None,
        };
        value = value * 36 + i64::from(digit);
    }
    let w = u32::try_from(width).ok()?;
    let block = 36i64.checked_pow(w - 1)?;
    let decimal_top = 10i64.checked_pow(w)?;
    Some(if upper {
        value - 10 * block + decimal_top
    } else {
        value + 16 * block + decimal_top
    })
}

/// Inverse of [`hy36_decode`] (for tests and for writing large files); None when out of range.
pub fn hy36_encode(width: usize, value: i64) -> Option<String> {
    let w = u32::try_from(width).ok()?;
    let decimal_top = 10i64.checked_pow(w)?;
    let block = 36i64.checked_pow(w - 1)?;
    let lowest = -(10i64.checked_pow(w - 1)? - 1);
    if value < lowest {
        return None;
    }
    if value < decimal_top {
        return Some(format!("{value:>width$}"));
    }
    let (mut rest, digits) = if value < decimal_top + 26 * block {
        (
            value - decimal_top + 10 * block,
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        )
    } else if value < decimal_top + 52 * block {
        (
            value - decimal_top - 16 * block,
            b"0123456789abcdefghijklmnopqrstuvwxyz",
        )
    } else {
        return None;
    };
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = digits[(rest % 36) as usize];
        rest /= 36;
    }
    String::from_utf8(out).ok()
}

/// The PDB rule: the element is right-justified in columns 13–14 of the atom name, so a name
/// starting with a letter in column 13 (e.g. "FE  ", "CL  ") is a two-letter element, one
/// starting with a blank or a digit is one letter (" CA " is carbon alpha, "1HB " hydrogen).
pub fn element_from_atom_name(name: &str) -> String {
    let b = name.as_bytes();
    if b.len() < 2 || !name.is_ascii() {
        return String::new();
    }
    if b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
        // Four-character hydrogen names ("HG12", "HD21") start in column 13 too; read them as H.
        let hydrogen_name = b[0] == b'H' && name.trim().len() >= 3;
        let two = &name[..2];
        if !hydrogen_name {
            if let Some(f) = FormFactor::lookup(two, 0) {
                return f.label.to_string();
            }
        }
        return name[..1].to_string();
    }
    if b[1].is_ascii_alphabetic() {
        return name[1..2].to_string();
    }
    String::new()
}

/// Charge columns 79–80: "2+" as the format says, "+2" as some programs write; blank is 0.
pub fn parse_charge(field: &str) -> Option<i32> {
    let f = field.trim();
    if f.is_empty() {
        return Some(0);
    }
    let (digits, sign) = if f.ends_with(['+', '-']) {
        (&f[..f.len() - 1], &f[f.len() - 1..])
    } else {
        (&f[1..], &f[..1])
    };
    let magnitude: i32 = if digits.is_empty() { 1 } else { digits.parse().ok()? };
    match sign {
        "+" => Some(magnitude),
        "-" => Some(-magnitude),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_from_name_follows_the_pdb_rule() {
        assert_eq!(element_from_atom_name(" CA "), "C");
        assert_eq!(element_from_atom_name("CA  "), "Ca");
        assert_eq!(element_from_atom_name("FE  "), "Fe");
        assert_eq!(element_from_atom_name(" N  "), "N");
        assert_eq!(element_from_atom_name("1HB "), "H");
        assert_eq!(element_from_atom_name("HG12"), "H");
        assert_eq!(element_from_atom_name(" OG1"), "O");
    }

    #[test]
    fn charges_parse_both_ways() {
        assert_eq!(parse_charge("2+"), Some(2));
        assert_eq!(parse_charge("1-"), Some(-1));
        assert_eq!(parse_charge("+2"), Some(2));
        assert_eq!(parse_charge("x"), None);
        assert_eq!(parse_charge("+-"), None);
    }

    #[test]
    fn hybrid_36_matches_the_reference_values() {
        // Values from cctbx's hybrid_36 documentation and tests.
        assert_eq!(hy36_decode(5, "99999"), Some(99_999));
        assert_eq!(hy36_decode(5, "A0000"), Some(100_000));
        assert_eq!(hy36_decode(5, "A0001"), Some(100_001));
        assert_eq!(hy36_decode(5, "ZZZZZ"), Some(43_770_015));
        assert_eq!(hy36_decode(5, "a0000"), Some(43_770_016));
        assert_eq!(hy36_decode(5, "zzzzz"), Some(87_440_031));
        assert_eq!(hy36_decode(4, "9999"), Some(9_999));
        assert_eq!(hy36_decode(4, "A000"), Some(10_000));
        assert_eq!(hy36_decode(4, "ZZZZ"), Some(1_223_055));
        assert_eq!(hy36_decode(4, "a000"), Some(1_223_056));
        assert_eq!(hy36_decode(4, "  -1"), Some(-1));
        assert_eq!(hy36_decode(4, " 12 "), Some(12));
        for bad in ["A00a", "a00A", "1 2 ", "12x4", "    ", "*123"] {
            assert_eq!(hy36_decode(4, bad), None, "{bad:?}");
        }
        for v in [-999, 0, 9_999, 10_000, 1_223_055, 1_223_056, 2_436_111] {
            let s = hy36_encode(4, v).unwrap();
            assert_eq!(hy36_decode(4, &s), Some(v), "{v} → {s:?}");
        }
        assert_eq!(hy36_encode(4, 2_436_112), None);
        assert_eq!(hy36_encode(5, 100_000).as_deref(), Some("A0000"));
    }
}
