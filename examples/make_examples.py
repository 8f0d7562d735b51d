"""Generate the example images in this folder (deterministic; no downloads, no font files).

Text is drawn with OpenCV's built-in fonts (``cv2.FONT_HERSHEY_*``: OpenCV 5 renders them as outline
fonts, OpenCV 4 as Hershey strokes, so the pixels depend on the OpenCV version; the committed
images were made with opencv-python-headless 5.0).

    python examples/make_examples.py            # rewrites examples/*.jpg and examples/newsletter.pdf
    python examples/make_examples.py --out DIR  # somewhere else

Four scenes of rendered words on varied backgrounds: a street sign on a gradient (horizontal and
slightly rotated lines), a poster on a noisy textured wall (rotated lines), a badge with a curved
line of text on blurred "bokeh" blobs, and a printed page (many small lines). They are what
``dbnet detect examples/`` runs on; the ground-truth polygons of the text lines are printed with
``--print-boxes``.

And a two-page PDF, ``newsletter.pdf``, with real (vector) text in PDF's standard Helvetica fonts,
written by a small PDF writer below: a title across the page over two columns of body text, a
table, a footer (``dbnet detect examples/newsletter.pdf``, ``--sort columns``; needs ``dbnet-cli[pdf]``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
FONTS = {"simplex": cv2.FONT_HERSHEY_SIMPLEX, "duplex": cv2.FONT_HERSHEY_DUPLEX,
         "complex": cv2.FONT_HERSHEY_COMPLEX, "triplex": cv2.FONT_HERSHEY_TRIPLEX,
         "plain": cv2.FONT_HERSHEY_PLAIN}


# --- drawing helpers (images are RGB uint8) --------------------------------------------------------
def text_mask(text: str, font: int, scale: float, thickness: int) -> np.ndarray:
    """Anti-aliased ink of ``text`` on a tight uint8 canvas (255 = ink)."""
    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    pad = thickness + 2
    canvas = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
    cv2.putText(canvas, text, (pad, h + pad), font, scale, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def blend(image: np.ndarray, alpha: np.ndarray, colour) -> None:
    a = alpha.astype(np.float32)[..., None] / 255.0
    image[:] = (image * (1 - a) + np.asarray(colour, np.float32) * a).round().astype(np.uint8)


def place(image: np.ndarray, mask: np.ndarray, centre, angle: float) -> np.ndarray:
    """Warp ``mask`` so that its centre lands on ``centre``, rotated by ``angle`` degrees clockwise
    on screen. Returns the full-size alpha and the rotated box (4x2, tl tr br bl)."""
    h, w = mask.shape
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    m = np.array([[c, -s, 0], [s, c, 0]], np.float64)
    m[:, 2] = np.asarray(centre) - m[:, :2] @ np.array([w / 2, h / 2])
    alpha = cv2.warpAffine(mask, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR)
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ m.T
    return alpha, corners


def draw_line(image, text, centre, height, angle=0.0, colour=(20, 20, 20), font="duplex",
              thickness=None, outline=None, shadow=None, left=False) -> np.ndarray:
    """One line of text whose capital letters are about ``height`` px tall, centred on ``centre``
    (or starting there with ``left``); returns its box."""
    f = FONTS[font]
    (_, h0), _ = cv2.getTextSize("H", f, 1.0, 1)
    scale = height / h0
    thickness = thickness or max(1, int(round(scale * 1.6)))
    mask = text_mask(text, f, scale, thickness)
    if left:
        half = mask.shape[1] / 2
        a = math.radians(angle)
        centre = (centre[0] + half * math.cos(a), centre[1] + half * math.sin(a))
    if shadow is not None:
        off = max(2, height // 12)
        alpha, _ = place(image, cv2.GaussianBlur(mask, (0, 0), off / 2), (centre[0] + off, centre[1] + off), angle)
        blend(image, alpha, shadow)
    if outline is not None:
        k = max(3, thickness * 2 + 1)
        fat = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        alpha, _ = place(image, fat, centre, angle)
        blend(image, alpha, outline)
    alpha, box = place(image, mask, centre, angle)
    blend(image, alpha, colour)
    return box


def draw_arc_text(image, text, centre, radius, mid_angle, height, colour, font="triplex",
                  thickness=None, inside=False) -> np.ndarray:
    """Text along a circle of ``radius`` around ``centre``, centred at ``mid_angle`` degrees
    (0 = top, clockwise). ``inside``: on the bottom, reading left to right. Returns the polygon
    around the line (outer edge then inner edge)."""
    f = FONTS[font]
    (_, h0), _ = cv2.getTextSize("H", f, 1.0, 1)
    scale = height / h0
    thickness = thickness or max(1, int(round(scale * 1.6)))
    widths = [cv2.getTextSize(ch, f, scale, thickness)[0][0] for ch in text]
    total = sum(widths)
    direction = -1.0 if inside else 1.0
    start = math.radians(mid_angle) - direction * total / 2 / radius
    s = 0.0
    for ch, w in zip(text, widths):
        theta = start + direction * (s + w / 2) / radius
        s += w
        if ch == " ":
            continue
        cx = centre[0] + radius * math.sin(theta)
        cy = centre[1] - radius * math.cos(theta)
        mask = text_mask(ch, f, scale, thickness)
        alpha, _ = place(image, mask, (cx, cy), math.degrees(theta) + (180 if inside else 0))
        blend(image, alpha, colour)
    # the line's polygon: outer and inner arcs
    t = np.linspace(start, start + direction * total / radius, 9)
    r_out, r_in = radius + height * 0.7, radius - height * 0.7
    outer = np.stack([centre[0] + r_out * np.sin(t), centre[1] - r_out * np.cos(t)], 1)
    inner = np.stack([centre[0] + r_in * np.sin(t), centre[1] - r_in * np.cos(t)], 1)
    return np.concatenate([outer, inner[::-1]]) if not inside else np.concatenate([inner, outer[::-1]])


# --- backgrounds ----------------------------------------------------------------------------------
def gradient(h, w, c0, c1, angle_deg=90.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = math.radians(angle_deg)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / (t.max() - t.min())
    c0, c1 = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return (c0 + (c1 - c0) * t[..., None]).round().astype(np.uint8)


def add_noise(image, rng, sigma) -> np.ndarray:
    noise = rng.normal(0, sigma, image.shape[:2] + (1,)).astype(np.float32)
    return (image.astype(np.float32) + noise).clip(0, 255).astype(np.uint8)


def wall(h, w, rng) -> np.ndarray:
    """Plastered brick wall: bricks of slightly different colours, mortar, blotches, grain."""
    img = np.zeros((h, w, 3), np.float32)
    img[:] = (168, 160, 150)
    bh, bw = 46, 120
    for row in range(h // bh + 1):
        off = (row % 2) * bw // 2
        for col in range(-1, w // bw + 2):
            x0, y0 = col * bw - off, row * bh
            tint = np.array((150, 82, 60), np.float32) + rng.normal(0, 12, 3)
            cv2.rectangle(img, (x0 + 3, y0 + 3), (x0 + bw - 3, y0 + bh - 3), tint.tolist(), -1)
    blotches = cv2.resize(rng.normal(0, 1, (h // 40 + 1, w // 40 + 1)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
    img += blotches[..., None] * 14
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return add_noise(img.clip(0, 255).astype(np.uint8), rng, 7)


def bokeh(h, w, rng) -> np.ndarray:
    img = gradient(h, w, (18, 30, 62), (70, 28, 60), 30).astype(np.float32)
    for _ in range(40):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        r = int(rng.uniform(15, 70))
        colour = rng.uniform(60, 255, 3)
        layer = np.zeros_like(img)
        cv2.circle(layer, c, r, colour.tolist(), -1, cv2.LINE_AA)
        img = img + layer * rng.uniform(0.15, 0.4)
    img = cv2.GaussianBlur(img, (0, 0), 6)
    return add_noise(img.clip(0, 255).astype(np.uint8), rng, 3)


def paper(h, w, rng) -> np.ndarray:
    img = gradient(h, w, (246, 242, 232), (228, 222, 208), 70).astype(np.float32)
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    img += fibres[..., None] * 6
    return img.clip(0, 255).astype(np.uint8)


# --- scenes ---------------------------------------------------------------------------------------
def street_sign(rng) -> tuple[np.ndarray, list]:
    h, w = 720, 1080
    img = gradient(h, w, (120, 170, 225), (235, 215, 190), 95)  # sky to haze
    img = add_noise(img, rng, 2)
    boxes = []
    # a green sign board, slightly rotated
    board = cv2.boxPoints(((540, 250), (760, 250), -3.0)).astype(np.int32)
    cv2.fillPoly(img, [board], (18, 104, 60), cv2.LINE_AA)
    cv2.polylines(img, [board], True, (240, 240, 240), 5, cv2.LINE_AA)
    boxes.append(draw_line(img, "MAIN STREET", (540, 205), 62, -3.0, (250, 250, 250), "duplex"))
    boxes.append(draw_line(img, "City Centre 2 km", (545, 305), 40, -3.0, (250, 250, 250), "simplex"))
    # a shop awning and smaller signs below
    cv2.rectangle(img, (60, 470), (500, 600), (190, 40, 40), -1)
    boxes.append(draw_line(img, "BAKERY", (280, 512), 44, 0.0, (255, 236, 180), "triplex"))
    boxes.append(draw_line(img, "fresh bread daily", (280, 568), 26, 0.0, (255, 255, 255), "complex"))
    cv2.rectangle(img, (600, 470), (1020, 650), (30, 30, 36), -1)
    boxes.append(draw_line(img, "OPEN 7-22", (810, 520), 48, 0.0, (255, 210, 40), "duplex"))
    boxes.append(draw_line(img, "No. 42", (720, 605), 32, -8.0, (200, 230, 255), "simplex"))
    boxes.append(draw_line(img, "Tel 555-0199", (900, 610), 22, 6.0, (220, 220, 220), "plain", 2))
    boxes.append(draw_line(img, "PARKING", (150, 80), 36, 12.0, (30, 60, 140), "duplex",
                           outline=(255, 255, 255)))
    return img, boxes


def poster_wall(rng) -> tuple[np.ndarray, list]:
    h, w = 768, 1024
    img = wall(h, w, rng)
    boxes = []
    # a paper poster, rotated
    poster = cv2.boxPoints(((420, 380), (470, 560), 8.0)).astype(np.int32)
    cv2.fillPoly(img, [poster], (236, 230, 214), cv2.LINE_AA)
    boxes.append(draw_line(img, "LIVE MUSIC", (440, 200), 52, 8.0, (160, 20, 30), "triplex"))
    boxes.append(draw_line(img, "Friday 21:00", (425, 300), 34, 8.0, (30, 30, 30), "duplex"))
    boxes.append(draw_line(img, "The Night Owls", (410, 380), 38, 8.0, (20, 50, 120), "complex"))
    boxes.append(draw_line(img, "free entry", (395, 470), 30, 8.0, (30, 30, 30), "simplex"))
    # graffiti-like words straight on the wall
    boxes.append(draw_line(img, "HELLO", (840, 160), 70, -18.0, (250, 250, 250), "duplex",
                           outline=(20, 20, 20)))
    boxes.append(draw_line(img, "dream big", (820, 560), 44, -30.0, (255, 220, 60), "triplex",
                           shadow=(0, 0, 0)))
    boxes.append(draw_line(img, "EXIT", (120, 690), 40, 0.0, (255, 255, 255), "simplex",
                           outline=(0, 120, 40)))
    boxes.append(draw_line(img, "gate 7", (900, 700), 30, 25.0, (30, 30, 30), "duplex"))
    return img, boxes


def curved_badge(rng) -> tuple[np.ndarray, list]:
    h, w = 800, 1200
    img = bokeh(h, w, rng)
    boxes = []
    centre = (600, 430)
    cv2.circle(img, centre, 250, (245, 200, 70), -1, cv2.LINE_AA)
    cv2.circle(img, centre, 250, (120, 60, 10), 6, cv2.LINE_AA)
    cv2.circle(img, centre, 150, (120, 60, 10), 3, cv2.LINE_AA)
    # curved lines: over the top of the badge, and along its bottom
    boxes.append(draw_arc_text(img, "GRAND OPENING SALE", centre, 195, 0, 40, (90, 30, 10), "triplex"))
    boxes.append(draw_arc_text(img, "since 1987", centre, 200, 180, 30, (90, 30, 10), "duplex",
                               inside=True))
    boxes.append(draw_line(img, "50%", (600, 420), 80, 0.0, (170, 20, 20), "duplex"))
    boxes.append(draw_line(img, "OFF", (600, 500), 44, 0.0, (170, 20, 20), "duplex"))
    boxes.append(draw_line(img, "Night Market", (200, 110), 40, -6.0, (255, 255, 255), "complex",
                           shadow=(0, 0, 0)))
    boxes.append(draw_line(img, "Hall B", (1020, 720), 34, 0.0, (255, 240, 200), "simplex"))
    return img, boxes


def printed_page(rng) -> tuple[np.ndarray, list]:
    h, w = 1100, 850
    img = paper(h, w, rng)
    boxes = []
    boxes.append(draw_line(img, "Quarterly Report", (425, 90), 40, 0.0, (20, 20, 60), "triplex"))
    cv2.rectangle(img, (70, 140), (780, 146), (30, 80, 160), -1)
    words = ("the", "text", "detector", "finds", "every", "line", "of", "words", "in", "scans",
             "photos", "and", "screenshots", "with", "polygons", "fast", "results", "were", "good")
    y = 200
    for _ in range(14):
        line = " ".join(rng.choice(words, int(rng.integers(4, 9))))
        line = line[0].upper() + line[1:] + "."
        boxes.append(draw_line(img, line, (80, y), 15, 0.0, (35, 35, 35), "complex", 1, left=True))
        y += 38
    # a table with numbers, and a stamp rotated on the page
    for r in range(4):
        for c in range(3):
            x, yy = 120 + c * 230, 770 + r * 50
            cv2.rectangle(img, (x - 100, yy - 22), (x + 100, yy + 22), (120, 120, 120), 1)
            boxes.append(draw_line(img, f"{(r + 1) * (c + 3) * 137:,}", (x, yy), 16, 0.0, (30, 30, 30),
                                   "simplex", 1))
    boxes.append(draw_line(img, "APPROVED", (640, 1010), 42, -15.0, (200, 40, 40), "duplex",
                           thickness=3))
    return img, boxes


# --- a text PDF (no library: a handful of objects, a content stream per page, a cross-reference table)
A4 = (595.28, 841.89)  # points
WORDS = ("the", "market", "opens", "early", "on", "saturday", "with", "fresh", "bread", "local", "music",
         "and", "a", "new", "library", "hours", "for", "families", "volunteers", "garden", "club", "meets",
         "every", "week", "near", "station", "bring", "friends", "tickets", "free", "entry", "council")


def _pdf_text(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _paragraph_lines(rng, count: int, chars: int) -> list[str]:
    """``count`` lines of random words, each at most ``chars`` characters, sentences capitalised."""
    lines, line, start = [], "", True
    while len(lines) < count:
        word = str(rng.choice(WORDS))
        word = word.capitalize() if start else word
        start = rng.random() < 0.12
        word += "." if start else ""
        if len(line) + 1 + len(word) > chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines


def newsletter_pages(rng) -> list[str]:
    """The content streams of the newsletter's two pages (PDF operators; y grows upwards)."""
    w, h = A4
    ops = ["0.15 0.25 0.55 rg BT /F2 24 Tf 56 770 Td (Riverside Community Newsletter) Tj ET",
           "0.3 0.3 0.3 rg BT /F1 11 Tf 56 748 Td (Issue 12 - December - What is on in the neighbourhood) Tj ET",
           "0.15 0.25 0.55 RG 2 w 56 738 m 539 738 l S", "0.1 0.1 0.1 rg"]
    for column, x in enumerate((56, 312)):
        y = 712
        ops.append(f"BT /F2 13 Tf {x} {y} Td ({('Market news', 'Library and clubs')[column]}) Tj ET")
        y -= 22
        for k, line in enumerate(_paragraph_lines(rng, 42, 44)):
            ops.append(f"BT /F1 10 Tf {x} {y} Td {_pdf_text(line)} Tj ET")
            y -= 14 if k % 10 != 9 else 24  # a paragraph break every ten lines
    first = "\n".join(ops)
    ops = ["0.15 0.25 0.55 rg BT /F2 18 Tf 56 780 Td (Opening hours) Tj ET", "0.1 0.1 0.1 rg"]
    rows = [("Place", "Weekdays", "Saturday")] + [
        (str(rng.choice(("Library", "Market hall", "Garden club", "Pool", "Town hall", "Museum"))),
         f"{int(rng.integers(7, 10))}:00 - {int(rng.integers(16, 20))}:00",
         f"{int(rng.integers(8, 11))}:30 - {int(rng.integers(13, 17))}:00") for _ in range(7)]
    for r, row in enumerate(rows):
        y = 740 - 30 * r
        ops.append(f"0.6 0.6 0.6 RG 0.7 w 56 {y - 9} m 539 {y - 9} l S")
        for c, cell in enumerate(row):
            font = "/F2" if r == 0 else "/F1"
            ops.append(f"BT {font} 11 Tf {66 + 170 * c} {y} Td {_pdf_text(cell)} Tj ET")
    ops.append("0.4 0.4 0.4 rg BT /F1 9 Tf 56 40 Td (Printed on recycled paper. Page 2 of 2.) Tj ET")
    ops.append("q 0.8 0.1 0.1 rg 0.966 0.259 -0.259 0.966 360 120 cm BT /F2 30 Tf 0 0 Td (APPROVED) Tj ET Q")
    return [first, "\n".join(ops)]


def pdf_document(streams: list[str], size=A4) -> bytes:
    """A PDF of one page per content stream, with Helvetica (/F1) and Helvetica-Bold (/F2)."""
    n = len(streams)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (5 + 2 * i) for i in range(n)) +
               b"] /Count %d >>" % n,
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"]
    for i, stream in enumerate(streams):
        data = stream.encode("latin-1")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> >>" % (size[0], size[1], 6 + 2 * i))
        objects.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


SCENES = [("street_sign.jpg", street_sign), ("poster_wall.jpg", poster_wall),
          ("curved_badge.jpg", curved_badge), ("printed_page.jpg", printed_page)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quality", type=int, default=88)
    parser.add_argument("--print-boxes", action="store_true", help="Print each line's polygon.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (name, scene) in enumerate(SCENES):
        image, boxes = scene(np.random.default_rng(1000 + i))
        path = args.out / name
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        assert ok
        path.write_bytes(data.tobytes())
        print(f"{path}: {image.shape[1]}x{image.shape[0]}, {len(boxes)} text lines, {len(data) // 1024} KB")
        if args.print_boxes:
            for box in boxes:
                print("  " + " ".join(f"{x:.0f},{y:.0f}" for x, y in box))
    pdf = args.out / "newsletter.pdf"
    pdf.write_bytes(pdf_document(newsletter_pages(np.random.default_rng(2000))))
    print(f"{pdf}: 2 A4 pages of text, {pdf.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
