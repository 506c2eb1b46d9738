"""Looking at the built book as a reader does: Debian's Chromium, driven by Playwright, opens every
page from disk (``file://``, as the README's ``xdg-open _build/html/index.html`` does) and collects
what a reader would meet; pure functions then turn each :class:`Page` into a list of problems.

:func:`visit` gathers, per page: console errors and uncaught exceptions, every request and those
that leave the site (blocked, never sent), each image's natural width and alt text, each displayed
equation's TeX and the number(s) shown next to it, math that MathJax did not typeset, citations
and their links, elements wider than the main column, every link, and the exercise and solution
blocks. Each ``*_problems`` function reads one of those; a test asserts that it returns nothing.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import yaml

# As root Chromium needs --no-sandbox; the rest keep it from reaching for the network by itself.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1280, "height": 900}  # a laptop's window: the book's three columns
MATHJAX_TIMEOUT_MS = 30_000
TAG = re.compile(r"\\tag\{([^{}]*)\}")
WRITTEN_NUMBER = re.compile(r"\\q?quad\s*\((\d+)\)\s*\.?\s*$")  # "(6)" typed into the formula


def find_chromium() -> str | None:
    """The system's Chromium (Debian's package ``chromium``), or ``None``."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def toc_pages(toc: Path) -> list[str]:
    """The document names of a Jupyter Book ``_toc.yml``, in reading order (``book/intro``, ...)."""
    tree = yaml.safe_load(Path(toc).read_text())
    names = [tree["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("sections", "chapters", "parts"):
                walk(entry.get(key))

    for key in ("chapters", "parts", "sections"):
        walk(tree.get(key))
    return [re.sub(r"\.(md|ipynb)$", "", name) for name in names]


@dataclass
class Page:
    """What a reader meets on one page of the built book."""

    name: str
    path: Path
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    equations: list[dict] = field(default_factory=list)
    untypeset: list[str] = field(default_factory=list)
    math_errors: list[str] = field(default_factory=list)
    raw_math: list[str] = field(default_factory=list)
    citations: list[dict] = field(default_factory=list)
    overflow: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    exercises: int = 0
    solutions: list[dict] = field(default_factory=list)
    solution_cells: list[dict] = field(default_factory=list)
    raw_directives: list[str] = field(default_factory=list)
    text: str = ""


# Runs in the page once it has loaded and MathJax has finished. Returns plain data.
COLLECT = textwrap.dedent(r"""
() => {
  const column = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const describe = (el) => {
    let name = el.tagName.toLowerCase();
    if (el.id) name += '#' + el.id;
    if (el.classList.length) name += '.' + Array.from(el.classList).slice(0, 3).join('.');
    const text = (el.innerText || el.getAttribute('src') || '').trim().replace(/\s+/g, ' ').slice(0, 60);
    return text ? `${name} "${text}"` : name;
  };
  // drawn with a size (a closed <details> still lays out its content, but does not draw it)
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && (!el.checkVisibility || el.checkVisibility({visibilityProperty: true}));
  };
  // screen-reader copies and deliberately clipped elements are not what a reader sees
  const hidden = (el) => el.closest('mjx-assistive-mml, .visually-hidden, .sr-only, .margin, .sidebar, .full-width, script, style, template');

  // Wide content is fine inside a box that scrolls sideways with a visible scrollbar (output,
  // tables); code is not: it must wrap. Anything else past the column, or clipped, is cut off.
  const columnRight = column.getBoundingClientRect().right;
  const isCode = (box) => box.matches('pre, div.highlight') && !box.closest('.cell_output, .output');
  const scrollbarShown = (box) => {
    const s = getComputedStyle(box);
    return box.offsetHeight - box.clientHeight - parseFloat(s.borderTopWidth) - parseFloat(s.borderBottomWidth) > 0;
  };
  const worst = new Map();  // one problem per clipping box (or the column)
  for (const el of column.querySelectorAll('*')) {
    if (hidden(el) || !visible(el)) continue;
    let box = null, scrolls = false;  // the nearest ancestor that clips or scrolls sideways
    for (let a = el.parentElement; a && a !== column.parentElement; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o !== 'visible') { box = a; scrolls = o === 'auto' || o === 'scroll'; break; }
    }
    const edge = box ? box.getBoundingClientRect().right : columnRight;
    const past = el.getBoundingClientRect().right - edge;
    if (past <= 1) continue;
    let text;
    if (!box) text = `${describe(el)} runs past the column`;
    else if (!scrolls) text = `${describe(el)} is cut off by ${describe(box).split(' ')[0]}`;
    else if (isCode(box)) text = `code ${describe(box)} needs sideways scrolling instead of wrapping`;
    else if (!scrollbarShown(box)) text = `${describe(box)} scrolls sideways with no visible scrollbar`;
    else continue;
    const key = box || el;
    if (!box) {  // report the outermost element past the column, not each of its children
      const parent = el.parentElement;
      if (parent && parent !== column && parent.getBoundingClientRect().right - columnRight > 1) continue;
    }
    if (!worst.has(key) || worst.get(key).past < past) worst.set(key, {past, text: `${text} (${Math.round(past)} px)`});
  }
  const overflow = Array.from(worst.values()).map(w => w.text);

  const images = Array.from(document.querySelectorAll('article img')).map(img => ({
    src: img.getAttribute('src') || '', width: img.naturalWidth, complete: img.complete,
    alt: img.getAttribute('alt'),
  }));

  const equations = [];
  const mathItems = (window.MathJax && MathJax.startup && MathJax.startup.document) ? Array.from(MathJax.startup.document.math) : [];
  for (const item of mathItems) {
    if (!item.display || !item.typesetRoot) continue;
    const box = item.typesetRoot.closest('div.math');
    const eqno = box ? box.querySelector(':scope > .eqno') : null;
    equations.push({
      tex: item.math,
      sphinx: eqno ? eqno.textContent.replace(/#/g, '').trim() : null,
      mathjax_tag: item.typesetRoot.querySelector('mjx-labels, mjx-mlabeledtr') !== null,
    });
  }
  const untypeset = Array.from(column.querySelectorAll('div.math, span.math'))
      .filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.trim().slice(0, 80));
  const mathErrors = Array.from(column.querySelectorAll('mjx-merror'))
      .map(el => el.getAttribute('data-mjx-error') || el.textContent);

  // text outside code and math, where "$$" or "\[" would be TeX left untypeset
  const prose = [];
  const walker = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest('pre, code, script, style, mjx-container, .math, textarea')) continue;
    prose.push(n.textContent);
  }
  const proseText = prose.join(' ');
  const rawMath = (proseText.match(/.{0,30}(\$\$|\\\[|\\\(|\\begin\{|\\frac|\\sum).{0,30}/g) || []);
  const rawDirectives = (proseText.match(/.{0,20}(```|:::)\s*\{[a-z-]+\}.{0,30}/g) || []);

  const citations = Array.from(column.querySelectorAll('.bibtex-citation, span.cite, a.citation')).map(el => ({
    text: el.textContent.trim(),
    links: Array.from(el.tagName === 'A' ? [el] : el.querySelectorAll('a[href]')).map(a => a.href),
  }));

  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  const solutions = Array.from(column.querySelectorAll('.solution')).map(el => ({
    text: el.innerText.trim().slice(0, 80), visible: visible(el.querySelector('section') || el),
  }));
  const solutionCells = Array.from(column.querySelectorAll('.cell.tag_solution')).map(el => ({
    text: (el.innerText || '').trim().slice(0, 80), visible: visible(el.querySelector('.cell_input') || el),
  }));
  return {overflow, images, equations, untypeset, mathErrors, rawMath, rawDirectives, citations, links,
          exercises: column.querySelectorAll('.exercise').length, solutions, solutionCells,
          text: column.innerText};
}
""")


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def file_of(url: str) -> Path | None:
    """The local file a ``file://`` URL names, or ``None`` for any other URL."""
    parsed = urlparse(url)
    return Path(unquote(parsed.path)).resolve() if parsed.scheme == "file" else None


def visit(context, site: Path, name: str, screenshot: Path | None = None) -> Page:
    """Open ``site/name.html`` in ``context`` (a Playwright browser context) and collect a :class:`Page`."""
    site = Path(site).resolve()
    path = site / f"{name}.html"
    page_data = Page(name=name, path=path)
    if not path.is_file():
        page_data.console.append(f"{path} does not exist: the page was not built")
        return page_data

    def route(route):
        url = route.request.url
        local = file_of(url)
        page_data.requests.append(url)
        if local is not None and inside(local, site):
            route.continue_()
        elif url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            page_data.external.append(url)
            route.abort("blockedbyclient")

    page = context.new_page()
    page.route("**/*", route)
    def console(message):
        if message.type == "error" and "ERR_BLOCKED_BY_CLIENT" not in message.text:  # blocked: reported as external
            page_data.console.append(f"{message.text} ({(message.location or {}).get('url', '')})")

    page.on("console", console)
    page.on("pageerror", lambda error: page_data.console.append(f"uncaught: {error}"))
    try:
        page.goto(path.as_uri(), wait_until="load")
        if page.evaluate("() => document.querySelector('script[src*=\"mathjax\" i], script[src*=\"tex-\"]') !== null"):
            try:
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                       timeout=MATHJAX_TIMEOUT_MS)
                page.evaluate("() => MathJax.startup.promise.then(() => true)")
            except Exception as error:  # MathJax never started: the TeX stays raw
                page_data.console.append(f"MathJax did not start: {str(error).splitlines()[0]}")
        data = page.evaluate(COLLECT)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    page_data.overflow = data["overflow"]
    page_data.images = data["images"]
    page_data.equations = data["equations"]
    page_data.untypeset = data["untypeset"]
    page_data.math_errors = data["mathErrors"]
    page_data.raw_math = data["rawMath"]
    page_data.raw_directives = data["rawDirectives"]
    page_data.citations = data["citations"]
    page_data.links = data["links"]
    page_data.exercises = data["exercises"]
    page_data.solutions = data["solutions"]
    page_data.solution_cells = data["solutionCells"]
    page_data.text = data["text"]
    return page_data


def launch(playwright, executable: str):
    """Chromium, headless, from ``executable``; Playwright downloads nothing."""
    # Playwright hides scrollbars in headless mode; a reader's browser shows them, and so does ours.
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
                                      ignore_default_args=["--hide-scrollbars"])


def visit_site(site: Path, names: list[str], screenshots: Path | None = None) -> list[Page]:
    """Every page of ``names`` in ``site``, one browser, in sequence."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = launch(playwright, executable)
        try:
            context = browser.new_context(viewport=VIEWPORT, service_workers="block")
            pages = [visit(context, site, name, None if screenshots is None else
                           Path(screenshots) / (name.replace("/", "_") + ".png")) for name in names]
            context.close()
        finally:
            browser.close()
    return pages


# --- the checks: each returns the problems it finds on one page -------------------------------------


def console_problems(page: Page) -> list[str]:
    """Console errors and uncaught exceptions."""
    return list(page.console)


def external_request_problems(page: Page) -> list[str]:
    """Requests for anything outside the built site (they were blocked): the book must work offline."""
    return [f"request leaves the site: {url}" for url in page.external]


def image_problems(page: Page) -> list[str]:
    """Images that did not load (natural width 0)."""
    return [f"image did not load: {image['src']}" for image in page.images if not image["width"]]


def alt_text_problems(page: Page) -> list[str]:
    """Images whose alt text is missing or only their file name (what a screen reader would read)."""
    problems = []
    for image in page.images:
        alt = (image.get("alt") or "").strip()
        name = Path(urlparse(image["src"]).path).name
        if not alt or Path(alt).name == name or re.fullmatch(r"[\w./-]+\.(png|jpe?g|svg|gif)", alt):
            problems.append(f"image without alt text: {image['src']} (alt={image.get('alt')!r})")
    return problems


def math_problems(page: Page) -> list[str]:
    """Mathematics that MathJax did not typeset: raw TeX in the prose, untypeset math, TeX errors."""
    problems = [f"raw TeX in the text: {text!r}" for text in page.raw_math]
    problems += [f"math not typeset: {text!r}" for text in page.untypeset]
    problems += [f"TeX error: {text!r}" for text in page.math_errors]
    return problems


def equation_numbers(equation: dict) -> list[str]:
    """The numbers a reader sees beside one displayed equation: Sphinx's and MathJax's ``\\tag``."""
    numbers = []
    if equation.get("sphinx"):
        numbers.append(equation["sphinx"].strip("()"))
    tex = equation.get("tex", "")
    tags = TAG.findall(tex)
    if equation.get("mathjax_tag") or tags:
        numbers.append(tags[0].strip() if tags else "?")
    written = WRITTEN_NUMBER.search(tex.strip())
    if written:
        numbers.append(written.group(1))
    return numbers


def survey_equations(survey_text: str) -> dict[str, str]:
    """``number -> TeX`` for every numbered equation of the survey's text (``$$ ... \\quad (N)$$``)."""
    found = {}
    for tex in re.findall(r"\$\$(.+?)\$\$", survey_text, flags=re.S):
        match = WRITTEN_NUMBER.search(tex.strip())
        if match:
            found[match.group(1)] = tex[: match.start()].strip()
    return found


def left_side(tex: str) -> frozenset[str]:
    """The words and letters of an equation's left-hand side, however it is typeset.

    ``L^c_{\\text{Score-CAM}}`` and ``L_{Score-CAM}^c`` both give {L, c, Score, CAM}."""
    side = WRITTEN_NUMBER.sub("", TAG.sub("", tex)).split("=")[0]
    side = re.sub(r"\\(text|mathrm|operatorname|mathbf|mathit|left|right|big|Big|,|;|quad|qquad)", " ", side)
    return frozenset(re.findall(r"[A-Za-z]+", side))


# The survey's numbered equations, by number: the left-hand sides its text gives (its excerpt in
# shared/seed/cam-survey.txt starts at (3); (1) is CAM's map and (2) Grad-CAM's, in section II).
# tests/book/test_browser_checks.py checks these against the survey's text where it is present.
SURVEY_LEFT_SIDES = {
    "3": r"a_n", "4": r"L_{Score-CAM}^c", "5": r"M'_c(x)", "6": r"Proportion", "7": r"IoU", "8": r"AD",
    "9": r"IC", "10": r"ADCC",
}
SURVEY_COUNT = 10


def equation_problems(page: Page, survey: dict[str, str] = SURVEY_LEFT_SIDES,
                      survey_count: int = SURVEY_COUNT) -> list[str]:
    """Equation numbers printed twice, repeated on a page, or not the survey's number for that equation."""
    problems, seen = [], {}
    for equation in page.equations:
        numbers = equation_numbers(equation)
        head = " ".join(TAG.sub("", equation["tex"]).split())[:50]
        if len(numbers) > 1:
            problems.append(f"numbered twice, {' '.join(f'({n})' for n in numbers)}: {head}")
        for number in set(numbers):
            if number in seen:
                problems.append(f"({number}) appears twice on the page: {seen[number]} and {head}")
            seen[number] = head
            if not number.isdigit() or not 1 <= int(number) <= survey_count:
                problems.append(f"({number}) is not a number of the survey's equations (1-{survey_count}): {head}")
            elif number in survey and left_side(survey[number]) != left_side(equation["tex"]):
                problems.append(f"({number}) is the survey's {survey[number][:40]!r}, not {head!r}")
    return problems


def target_problems(url: str, site: Path, ids_of) -> str | None:
    """Why the internal link ``url`` does not resolve (``None`` if it does); ``ids_of(path)`` gives a page's ids."""
    base, fragment = urldefrag(url)
    path = file_of(base)
    if path is None or not inside(path, site):
        return None  # not a link inside the site
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        return f"link to a missing file: {url}"
    if fragment and path.suffix == ".html" and unquote(fragment) not in ids_of(path):
        return f"link to a missing anchor: {url}"
    return None


_ID = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")


def page_ids(path: Path, cache: dict = {}) -> set[str]:  # noqa: B006 (a cache for one run)
    if path not in cache:
        cache[path] = set(_ID.findall(path.read_text(errors="replace")))
    return cache[path]


def link_problems(page: Page, site: Path) -> list[str]:
    """Links to pages or anchors of the site that do not exist."""
    site = Path(site).resolve()
    problems = {target_problems(url, site, page_ids) for url in page.links}
    return sorted(p for p in problems if p)


def citation_problems(page: Page, site: Path) -> list[str]:
    """Citations that do not link to an entry of the bibliography (an unknown key renders as "[]")."""
    site = Path(site).resolve()
    problems = []
    for citation in page.citations:
        if not citation["links"] or not citation["text"].strip("[]() ,;"):
            problems.append(f"citation resolves to nothing: {citation['text']!r}")
            continue
        for url in citation["links"]:
            broken = target_problems(url, site, page_ids)
            if broken or "#" not in url:
                problems.append(f"citation {citation['text']!r} does not reach a bibliography entry: {url}")
    return problems


def overflow_problems(page: Page) -> list[str]:
    """Elements of the main column that run past it, or are cut off, with no scroll to reach them."""
    return list(page.overflow)


def exercise_problems(page: Page) -> list[str]:
    """Exercise directives left as text, or solutions without their rendered block."""
    return [f"directive not rendered: {text!r}" for text in page.raw_directives]


def visible_solution_problems(page: Page) -> list[str]:
    """Solutions a reader sees without asking: solution blocks or solution code not folded away."""
    problems = [f"solution in plain view: {s['text']!r}" for s in page.solutions if s["visible"]]
    problems += [f"solution code in plain view: {c['text']!r}" for c in page.solution_cells if c["visible"]]
    return problems


def student_solution_problems(page: Page, solution_texts: list[str]) -> list[str]:
    """Any solution in the student edition: a solution block, a solution cell, or an instructor's answer."""
    problems = [f"solution block: {s['text']!r}" for s in page.solutions]
    problems += [f"solution cell: {c['text']!r}" for c in page.solution_cells]
    problems += [f"text of a solution: {text[:60]!r}" for text in solution_texts if text and text in page.text]
    return problems


# --- a book broken on purpose, to prove that each check can fail -------------------------------------

WIDE_TABLE = "<table><tr>" + "".join(f"<th>column {i}</th>" for i in range(24)) + "</tr><tr>" + \
    "".join(f"<td>{i * 1.23456789:.8f}</td>" for i in range(24)) + "</tr></table>"
LONG_CODE = "scores = {" + ", ".join(f"'method_{i}': {i}.0" for i in range(30)) + "}"

BROKEN_PAGES = {
    "index.md": """# A book broken on purpose

Every other page breaks one thing. And here, <a href="nowhere.html#nothing">a link to a page that
does not exist</a> and [a link to an anchor that does not exist](citation.md#no-such-anchor).
""",
    "citation.md": """# Citations

A citation that resolves {cite}`good2020`, and one whose key is in no bibliography {cite}`nosuchkey2020`.
""",
    "image.md": """# A missing image

![a figure whose file was never written](missing.png)
""",
    "remote.md": """# A remote image

<img src="https://example.invalid/figure.png" alt="a figure from another site">
""",
    "equations.md": """# Equations

Numbered by Sphinx and by hand:

```{math}
:label: eq-twice
a_n = \\frac{1}{Z} \\sum_i \\sum_j \\frac{\\partial y^c}{\\partial A^n_{ij}} \\qquad (3)
```

Not the survey's equation (4):

$$
b = c \\tag{4}
$$

and TeX that cannot be typeset: $$ x^{ $$
""",
    "bibliography.md": """# Bibliography

```{bibliography}
```
""",
}


def write_broken_book(folder: Path) -> Path:
    """A small Jupyter Book in ``folder``, each page broken in one way; returns ``folder``.

    It uses camsurvey's Sphinx extension (for MathJax from the site) but not the book's
    stylesheet, so its wide table and long code line are cut off as they were in the book."""
    import nbformat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in BROKEN_PAGES.items():
        (folder / name).write_text(text)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# A wide table\n\nOne in the text, too wide for the column:\n\n" + WIDE_TABLE),
        nbformat.v4.new_code_cell(LONG_CODE, execution_count=1, outputs=[nbformat.v4.new_output(
            "execute_result", {"text/html": WIDE_TABLE, "text/plain": "a table"}, execution_count=1)]),
    ]
    nbformat.write(notebook, folder / "table.ipynb")
    exercises = nbformat.v4.new_notebook(metadata=notebook.metadata)
    exercises.cells = [  # the solutions as they are written, not folded away (camsurvey_fold_solutions)
        nbformat.v4.new_markdown_cell("# Exercises\n\n```{exercise}\n:label: ex-broken\nWrite the map.\n```"),
        nbformat.v4.new_code_cell("weights = activations.mean(dim=(-2, -1))  # the answer", execution_count=1,
                                  metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("```{solution} ex-broken\nThe map is the weighted sum.\n```"),
    ]
    nbformat.write(exercises, folder / "exercises.ipynb")
    (folder / "references.bib").write_text(
        "@article{good2020,\n  title={A paper that exists},\n  author={Doe, Jane},\n  journal={J},\n  year={2020}\n}\n")
    (folder / "_toc.yml").write_text(yaml.safe_dump({
        "format": "jb-book", "root": "index",
        "chapters": [{"file": n.rsplit(".", 1)[0]} for n in
                     ["citation.md", "image.md", "remote.md", "equations.md", "table.ipynb", "exercises.ipynb",
                      "bibliography.md"]]}, sort_keys=False))
    (folder / "_config.yml").write_text(yaml.safe_dump({
        "title": "A broken book",
        "execute": {"execute_notebooks": "off"},
        "bibtex_bibfiles": ["references.bib"],
        "parse": {"myst_enable_extensions": ["amsmath", "dollarmath", "colon_fence"]},
        "sphinx": {"extra_extensions": ["sphinx_exercise", "camsurvey.book.site"],
                   "config": {"mathjax_path": "mathjax/tex-chtml.js", "html_context": {"default_mode": "light"},
                              "camsurvey_fold_solutions": False}},
    }, sort_keys=False))
    return folder
