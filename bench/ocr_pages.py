"""Rendered documents with known text (no downloads, nothing committed): the inputs of
``bench/bench_ocr.py``.

``receipt(rng)``, ``form(rng)`` and ``screenshot(rng)`` each return an ``(H, W, 3)`` uint8 RGB image
and the lines of text drawn on it (strings, in drawing order). Fonts: the DejaVu faces when installed
(sans, serif, mono, bold, condensed), else Pillow's built-in scalable font; sizes 11-34 px; contrast
lowered to 45-100%, Gaussian noise, blur, JPEG at quality 30-90, and a slight tilt on receipts and forms
(as scanned / photographed paper).
``document_set(count, seed)`` cycles the three kinds. Deterministic given the seed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FACES = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
         "DejaVuSansCondensed.ttf", "DejaVuSerifCondensed.ttf"]
ITEMS = ["Coffee", "Latte", "Croissant", "Bagel", "Orange juice", "Water", "Sandwich", "Salad", "Muffin",
         "Tea", "Cookie", "Soup", "Pasta", "Pizza slice", "Yogurt", "Banana", "Apple pie", "Espresso"]
SHOPS = ["Corner Cafe", "Green Market", "Blue Door Bakery", "City Deli", "Harbor Foods", "Maple Grocery"]
STREETS = ["Main Street", "Oak Avenue", "Station Road", "High Street", "Park Lane", "River Road"]
NAMES = ["Anna Schmidt", "John Miller", "Maria Garcia", "Wei Zhang", "Olivia Brown", "Lucas Martin"]
CITIES = ["Berlin", "Boston", "Madrid", "Toronto", "Lyon", "Denver", "Oslo", "Dublin"]
LABELS = ["Name", "Address", "City", "Phone", "Email", "Date of birth", "Account", "Reference"]
MENU = ["File", "Edit", "View", "Tools", "Help", "Settings", "Search", "Export"]
SENTENCES = ["Your changes have been saved", "Connect to the server", "Download the latest report",
             "Select the files to upload", "Search results for invoices", "Notifications are turned off",
             "Last updated two minutes ago", "Sign in to continue", "Open recent projects"]


def font(rng: np.random.Generator, size: int, faces: list[str] | None = None) -> ImageFont.FreeTypeFont:
    """A random face from ``faces`` (default ``FACES``) at ``size`` px, or Pillow's built-in font."""
    names = [f for f in (faces or FACES) if (FONT_DIR / f).exists()]
    if not names:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(FONT_DIR / names[int(rng.integers(len(names)))]), size)


def _money(rng: np.random.Generator, high: float = 30.0) -> str:
    return f"{rng.uniform(0.5, high):.2f}"


def _finish(page: Image.Image, rng: np.random.Generator, tilt: float, noise: float) -> np.ndarray:
    """Tilt by up to ``tilt`` degrees (white fill), lower the contrast (to 45-100%), blur a little, add
    Gaussian noise of up to ``noise`` sigma, then JPEG-compress at quality 30-90."""
    a = np.array(page).astype(np.float32)
    contrast = float(rng.uniform(0.45, 1.0))
    a = (255 - (255 - a) * contrast).astype(np.uint8)
    angle = float(rng.uniform(-tilt, tilt))
    if tilt:
        h, w = a.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        a = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(250, 250, 250))
    if rng.random() < 0.5:
        a = cv2.GaussianBlur(a, (3, 3), 0.6)
    a = np.clip(a.astype(np.float32) + rng.normal(0, rng.uniform(0.3, 1.0) * noise, a.shape), 0, 255)
    ok, jpeg = cv2.imencode(".jpg", a.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
    return cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)


def receipt(rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A till receipt: shop, address, date, 4-9 items with prices right-aligned, totals."""
    size = int(rng.integers(12, 25))
    f = font(rng, size, ["DejaVuSansMono.ttf", "DejaVuSans.ttf", "DejaVuSansCondensed.ttf"])
    width = int(rng.integers(420, 560))
    items = [(str(rng.choice(ITEMS)), _money(rng)) for _ in range(int(rng.integers(4, 10)))]
    total = sum(float(p) for _, p in items)
    cash = np.ceil(total / 10) * 10
    left = [str(rng.choice(SHOPS)), f"{int(rng.integers(1, 200))} {rng.choice(STREETS)}",
            f"{int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/2026 {int(rng.integers(7, 22))}:"
            f"{int(rng.integers(0, 60)):02d}"]
    rows = [(name, price) for name, price in items]
    rows += [("TOTAL", f"{total:.2f}"), ("CASH", f"{cash:.2f}"), ("CHANGE", f"{cash - total:.2f}")]
    height = int(size * 1.8 * (len(left) + len(rows) + 3)) + 40
    page = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(236, 256, 3)))
    draw, y, lines = ImageDraw.Draw(page), 20, []
    for text in left:
        draw.text((24, y), text, fill=(20, 20, 20), font=f)
        lines.append(text)
        y += int(size * 1.8)
    y += size
    for name, price in rows:
        draw.text((24, y), name, fill=(20, 20, 20), font=f)
        draw.text((width - 24 - f.getlength(price), y), price, fill=(20, 20, 20), font=f)
        lines += [name, price]
        y += int(size * 1.8)
    draw.text((24, y + size), "Thank you", fill=(20, 20, 20), font=f)
    lines.append("Thank you")
    return _finish(page, rng, 1.0, 10.0), lines


def form(rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A filled-in form: a title, then label / value pairs, values in drawn boxes."""
    size = int(rng.integers(12, 27))
    width, rows = 1000, int(rng.integers(5, 9))
    page = Image.new("RGB", (width, int(size * 2.6 * (rows + 2)) + 60), (252, 252, 250))
    draw = ImageDraw.Draw(page)
    title_font, f, value_font = font(rng, size + 8), font(rng, size), font(rng, size)
    title = f"Application form {int(rng.integers(100, 999))}"
    draw.text((40, 24), title, fill=(10, 10, 60), font=title_font)
    lines, y = [title], 24 + int(size * 3)
    for label in rng.choice(LABELS, rows, replace=False):
        value = _form_value(rng, str(label))
        draw.text((40, y), f"{label}:", fill=(40, 40, 40), font=f)
        draw.rectangle((330, y - 8, 960, y + size + 10), outline=(120, 120, 160), width=1)
        draw.text((342, y), value, fill=(0, 0, 90), font=value_font)
        lines += [f"{label}:", value]
        y += int(size * 2.6)
    return _finish(page, rng, 0.8, 8.0), lines


def _form_value(rng: np.random.Generator, label: str) -> str:
    if label == "Name":
        return str(rng.choice(NAMES))
    if label == "Address":
        return f"{int(rng.integers(1, 300))} {rng.choice(STREETS)}"
    if label == "City":
        return str(rng.choice(CITIES))
    if label == "Phone":
        return f"+1 {int(rng.integers(200, 999))} {int(rng.integers(100, 999))} {int(rng.integers(1000, 9999))}"
    if label == "Email":
        return f"{str(rng.choice(NAMES)).split()[0].lower()}@example.com"
    if label == "Date of birth":
        return f"{int(rng.integers(1, 29)):02d}.{int(rng.integers(1, 13)):02d}.{int(rng.integers(1950, 2005))}"
    return f"AC-{int(rng.integers(10000, 99999))}"


def screenshot(rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """An application window: a coloured title bar, a menu, buttons, and lines of body text."""
    width, height = 1024, 640
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    bar = tuple(int(v) for v in rng.integers(20, 110, 3))
    draw.rectangle((0, 0, width, 44), fill=bar)
    title = f"{rng.choice(['Report', 'Inbox', 'Dashboard', 'Invoices'])} {int(rng.integers(2, 99))}"
    draw.text((16, 10), title, fill=(255, 255, 255), font=font(rng, 20, ["DejaVuSans-Bold.ttf"]))
    lines, x = [title], 16
    menu_font = font(rng, int(rng.integers(11, 18)), ["DejaVuSans.ttf", "DejaVuSansCondensed.ttf"])
    for item in rng.choice(MENU, 5, replace=False):
        draw.text((x, 56), str(item), fill=(30, 30, 30), font=menu_font)
        lines.append(str(item))
        x += int(menu_font.getlength(str(item))) + 30
    body = font(rng, int(rng.integers(11, 20)), ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansCondensed.ttf"])
    y = 110
    for text in rng.choice(SENTENCES, 6, replace=False):
        draw.text((24, y), str(text), fill=(50, 50, 50), font=body)
        lines.append(str(text))
        y += int(body.size * 2.2)
    for i, label in enumerate(["Cancel", "Save", "Apply"]):
        bx = width - 360 + i * 115
        fill = (40, 100, 200) if i else (220, 220, 220)
        draw.rounded_rectangle((bx, height - 70, bx + 100, height - 30), 6, fill=fill)
        draw.text((bx + 18, height - 60), label, fill=(255, 255, 255) if i else (20, 20, 20), font=menu_font)
        lines.append(label)
    return _finish(page, rng, 0.0, 4.0), lines


def document_set(count: int, seed: int = 0) -> list[tuple[str, np.ndarray, list[str]]]:
    """``count`` documents ``(kind, image, lines)``: receipts, forms and screenshots in turn."""
    rng = np.random.default_rng(seed)
    makers = [("receipt", receipt), ("form", form), ("screenshot", screenshot)]
    return [(makers[i % 3][0], *makers[i % 3][1](rng)) for i in range(count)]
