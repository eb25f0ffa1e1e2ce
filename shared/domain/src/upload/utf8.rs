//! Lossy decoding that remembers where it replaced bytes.

/// One U+FFFD inserted into the lossy text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replacement {
    /// Byte position of the U+FFFD in the lossy text.
    pub lossy_pos: usize,
    /// Byte offset of the invalid sequence in the original body.
    pub original_offset: usize,
}

pub(crate) struct Lossy {
    pub text: String,
    /// Sorted by `lossy_pos` (and by `original_offset`).
    pub replacements: Vec<Replacement>,
}

pub(crate) fn lossy(bytes: &[u8]) -> Lossy {
    let mut text = String::with_capacity(bytes.len() + 16);
    let mut replacements = Vec::new();
    let mut original = 0;
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        original += chunk.valid().len();
        if !chunk.invalid().is_empty() {
            replacements.push(Replacement {
                lossy_pos: text.len(),
                original_offset: original,
            });
            text.push(char::REPLACEMENT_CHARACTER);
            original += chunk.invalid().len();
        }
    }
    Lossy { text, replacements }
}

/// If `span` (a slice of `whole`) contains a replacement, its original byte offset.
pub(crate) fn first_replacement_in(
    whole: &str,
    span: &str,
    replacements: &[Replacement],
) -> Option<usize> {
    if replacements.is_empty() {
        return None;
    }
    let start = (span.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + span.len();
    let i = replacements.partition_point(|r| r.lossy_pos < start);
    replacements
        .get(i)
        .filter(|r| r.lossy_pos < end)
        .map(|r| r.original_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions() {
        let bytes = b"ab\xffcd\xe2\x82ef\xf0";
        let l = lossy(bytes);
        assert_eq!(l.text, "ab\u{fffd}cd\u{fffd}ef\u{fffd}");
        let pos: Vec<_> = l
            .replacements
            .iter()
            .map(|r| (r.lossy_pos, r.original_offset))
            .collect();
        assert_eq!(pos, vec![(2, 2), (7, 5), (12, 9)]);
        let t = &l.text;
        assert_eq!(first_replacement_in(t, &t[0..2], &l.replacements), None);
        assert_eq!(first_replacement_in(t, &t[0..5], &l.replacements), Some(2));
        assert_eq!(first_replacement_in(t, &t[5..7], &l.replacements), None);
        assert_eq!(first_replacement_in(t, &t[5..], &l.replacements), Some(5));
    }
}
