import VideoContract

/// A video's storyboard as players read it (video.js, Shaka, Mux Player, the web page): a WebVTT file whose cue
/// for each sprite tile spans the tile's interval and names the tile's rectangle in the sprite image with a
/// media fragment, `sprite.jpg#xywh=x,y,w,h`.
enum Storyboard {
    static func webVTT(_ sprite: VideoStatus.Sprite, image: String) -> String {
        var text = "WEBVTT\n"
        for tile in 0..<max(0, sprite.count) {
            let x = (tile % max(1, sprite.columns)) * sprite.tileWidth
            let y = (tile / max(1, sprite.columns)) * sprite.tileHeight
            let start = Double(tile) * sprite.interval
            text += "\n\(timestamp(start)) --> \(timestamp(start + sprite.interval))\n"
            text += "\(image)#xywh=\(x),\(y),\(sprite.tileWidth),\(sprite.tileHeight)\n"
        }
        return text
    }

    /// `hh:mm:ss.ttt`, as WebVTT writes cue times.
    static func timestamp(_ seconds: Double) -> String {
        let milliseconds = Int((max(0, seconds) * 1000).rounded())
        let (hours, rest) = milliseconds.quotientAndRemainder(dividingBy: 3_600_000)
        let (minutes, rest2) = rest.quotientAndRemainder(dividingBy: 60_000)
        let (secs, millis) = rest2.quotientAndRemainder(dividingBy: 1000)
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(hours, 2)):\(pad(minutes, 2)):\(pad(secs, 2)).\(pad(millis, 3))"
    }
}
