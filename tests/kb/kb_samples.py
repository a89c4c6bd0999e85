"""Sample texts and document makers shared by the knowledge-base tests (imported as `kb_samples`)."""

from __future__ import annotations

from pathlib import Path

EN_VACATION = (
    "Every employee receives fifteen days of paid annual leave each year. Unused leave expires at the end of March."
)
EN_EXPENSES = "Travel expenses are reimbursed within thirty days after the receipts are submitted to finance."
ZH_SECURITY = "所有员工必须每九十天更换一次电脑密码。密码长度不得少于十二个字符，并且不能与前五次的密码相同。"
ZH_CANTEEN = "公司食堂每天中午十一点半开放，提供免费午餐。晚餐需要提前一天在系统里预订。"


def make_pdf(path: Path, pages: list[str], encrypt: str | None = None) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, encrypt=encrypt)
    c.setTitle("Safety Manual")
    for text in pages:
        y = 800
        for line in text.split("\n"):
            c.drawString(72, y, line)
            y -= 16
        c.showPage()
    c.save()
    return path


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Office Guide", level=1)
    d.add_heading("Parking", level=2)
    d.add_paragraph("Visitors park in the north garage on level two.")
    d.add_heading("Printing", level=2)
    d.add_paragraph("Colour printers are on the third floor next to the kitchen.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "room"
    table.cell(0, 1).text = "capacity"
    table.cell(1, 0).text = "Aurora"
    table.cell(1, 1).text = "12"
    d.save(str(path))
    return path
