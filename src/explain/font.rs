//! A 3×5 pixel font for the titles of an explanation's panels: upper-case letters (lower case
//! is drawn upper case), digits and a little punctuation; any other character is drawn as '?'.

/// Glyph width and height in font pixels; characters advance by one more than the width.
pub const GLYPH_W: usize = 3;
pub const GLYPH_H: usize = 5;

/// Rows top to bottom, 'x' lit.
const GLYPHS: &[(char, &str)] = &[
    ('A', "xxx x.x xxx x.x x.x"),
    ('B', "xx. x.x xx. x.x xx."),
    ('C', "xxx x.. x.. x.. xxx"),
    ('D', "xx. x.x x.x x.x xx."),
    ('E', "xxx x.. xx. x.. xxx"),
    ('F', "xxx x.. xx. x.. x.."),
    ('G', "xxx x.. x.x x.x xxx"),
    ('H', "x.x x.x xxx x.x x.x"),
    ('I', "xxx .x. .x. .x. xxx"),
    ('J', "..x ..x ..x x.x xxx"),
    ('K', "x.x x.x xx. x.x x.x"),
    ('L', "x.. x.. x.. x.. xxx"),
    ('M', "x.x xxx xxx x.x x.x"),
    ('N', "xx. x.x x.x x.x x.x"),
    ('O', "xxx x.x x.x x.x xxx"),
    ('P', "xxx x.x xxx x.. x.."),
    ('Q', "xxx x.x x.x xxx ..x"),
    ('R', "xx. x.x xx. x.x x.x"),
    ('S', ".xx x.. .x. ..x xx."),
    ('T', "xxx .x. .x. .x. .x."),
    ('U', "x.x x.x x.x x.x xxx"),
    ('V', "x.x x.x x.x x.x .x."),
    ('W', "x.x x.x xxx xxx x.x"),
    ('X', "x.x x.x .x. x.x x.x"),
    ('Y', "x.x x.x .x. .x. .x."),
    ('Z', "xxx ..x .x. x.. xxx"),
    ('0', "xxx x.x x.x x.x xxx"),
    ('1', ".x. xx. .x. .x. xxx"),
    ('2', "xxx ..x xxx x.. xxx"),
    ('3', "xxx ..x xxx ..x xxx"),
    ('4', "x.x x.x xxx ..x ..x"),
    ('5', "xxx x.. xxx ..x xxx"),
    ('6', "xxx x.. xxx x.x xxx"),
    ('7', "xxx ..x ..x .x. .x."),
    ('8', "xxx x.x xxx x.x xxx"),
    ('9', "xxx x.x xxx ..x xxx"),
    (' ', "... ... ... ... ..."),
    ('.', "... ... ... ... .x."),
    (',', "... ... ... .x. x.."),
    (':', "... .x. ... .x. ..."),
    ('-', "... ... xxx ... ..."),
    ('+', "... .x. xxx .x. ..."),
    ('_', "... ... ... ... xxx"),
    ('=', "... xxx ... xxx ..."),
    ('/', "..x ..x .x. x.. x.."),
    ('%', "x.x ..x .x. x.. x.x"),
    ('(', ".x. x.. x.. x.. .x."),
    (')', ".x. ..x ..x ..x .x."),
    ('?', "xxx ..x .x. ... .x."),
];

/// Whether font pixel (`x`, `y`) of `ch` is lit.
pub fn lit(ch: char, x: usize, y: usize) -> bool {
    let up = ch.to_ascii_uppercase();
    let rows = GLYPHS
        .iter()
        .find(|(c, _)| *c == up)
        .or_else(|| GLYPHS.iter().find(|(c, _)| *c == '?'))
        .map_or("", |(_, rows)| rows);
    x < GLYPH_W
        && rows
            .split(' ')
            .nth(y)
            .and_then(|row| row.as_bytes().get(x))
            .is_some_and(|&b| b == b'x')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_three_by_five() {
        for (c, rows) in GLYPHS {
            let rows: Vec<&str> = rows.split(' ').collect();
            assert_eq!(rows.len(), GLYPH_H, "{c}");
            assert!(rows.iter().all(|r| r.len() == GLYPH_W), "{c}");
        }
        assert!(lit('a', 0, 0) && lit('A', 2, 4) && !lit('A', 1, 1));
        assert_eq!(lit('é', 1, 4), lit('?', 1, 4));
        assert!(!lit('A', 3, 0) && !lit('A', 0, 5));
    }
}
