/// Comparison of secrets (signatures, tokens) that does not stop at the first differing byte, so its time does
/// not tell an attacker how much of a guess was right. Values of different lengths compare unequal at once: the
/// length of a signature or token is not a secret.
public enum ConstantTime {
    public static func equal(_ a: String, _ b: String) -> Bool {
        equal(Array(a.utf8), Array(b.utf8))
    }

    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
