//! Binary patches for tests of the patch apply: git's base85 encoding and inflation bombs.

use std::io::Write;

/// git's base85 alphabet.
const B85: &[u8; 85] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";

/// `data` as the base85 lines of a `GIT binary patch` hunk (52 bytes per line, each line led by
/// its length letter).
pub fn git_base85_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 5 / 4 + data.len() / 26);
    for chunk in data.chunks(52) {
        let n = chunk.len() as u8;
        out.push(if n <= 26 { b'A' + n - 1 } else { b'a' + n - 27 } as char);
        for group in chunk.chunks(4) {
            let mut w = [0u8; 4];
            w[..group.len()].copy_from_slice(group);
            let mut acc = u32::from_be_bytes(w);
            let mut five = [0u8; 5];
            for slot in five.iter_mut().rev() {
                *slot = B85[(acc % 85) as usize];
                acc /= 85;
            }
            out.extend(five.iter().map(|b| *b as char));
        }
        out.push('\n');
    }
    out
}

/// The base85 lines of `zeros` zero bytes, zlib-compressed: the body of an inflation bomb.
pub fn zero_bomb_lines(zeros: u64) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        z.write_all(&block[..n]).expect("compress");
        left -= n as u64;
    }
    git_base85_lines(&z.finish().expect("compress"))
}

/// A patch adding `path` as a `literal` hunk with the base85 `lines`, declaring `declared`
/// bytes.
pub fn binary_literal_patch(path: &str, lines: &str, declared: u64) -> String {
    format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000000000000000000000000000000000000..1111111111111111111111111111111111111111\nGIT binary patch\nliteral {declared}\n{lines}\nliteral 0\nHcmV?d00001\n\n"
    )
}
