"""The risk model described: one entry per rule of `schemas.alerts.Rule`, for `povwatch rules list` and docs/rules.md.

Each `RuleDoc` gives the rule's scope, its condition in Chinese and in English, the `RuleConfig` thresholds it
uses (schemas/thresholds.py), what its alert id is made of (its *fact*: one fact, one alert), when a
timer judges it later, and worked examples. The conditions are templates: `{name}` is the threshold `name`,
filled with the values in force (`conditions(doc, cfg)`), so the command shows what the monitor applies now and
the documentation the defaults. A unit test keeps this list, the rules and the thresholds in step.

The monitor's rules themselves are in rules.py, household_rules.py and regional_rules.py; this module only
describes them and imports nothing of theirs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from string import Formatter
from typing import Any, Literal

from plumbing.table import render_table
from schemas.alerts import HOUSEHOLD_RULES, REGIONAL_RULES, Rule, Severity
from schemas.catalog import Feed, feeds_of_rule
from schemas.thresholds import IncomeLines, RuleConfig

__all__ = [
    "Scope",
    "Example",
    "RuleDoc",
    "RULE_DOCS",
    "GENERAL_THRESHOLDS",
    "placeholders",
    "shown",
    "conditions",
    "timer_text",
    "thresholds_of",
    "threshold_users",
    "json_value",
    "rules_listing",
    "render_rules_text",
    "render_rules_json",
]

Scope = Literal["household", "regional"]

# Thresholds that no single rule uses: how long the monitor keeps state (every window must fit in it).
GENERAL_THRESHOLDS: tuple[str, ...] = ("history_horizon_days", "regional_list_max")


@dataclass(frozen=True)
class Example:
    """A worked example with the default thresholds: the input row(s) in words, and what the rule raises."""

    given: str
    severity: Severity | None  # None: no alert
    reason: str = ""  # the alert's Chinese reason (empty when none is raised)


@dataclass(frozen=True)
class RuleDoc:
    rule: Rule
    title: str  # the rule's Chinese name
    condition_zh: str  # a template: {threshold} placeholders
    condition_en: str
    thresholds: tuple[str, ...]  # the RuleConfig fields the rule uses
    fact: str  # what the alert id is made of, besides the rule and the household (or region)
    examples: tuple[Example, ...]
    timer: str = ""  # what a timer judges later, on the clock; empty: judged on arrival only

    @property
    def scope(self) -> Scope:
        return "regional" if self.rule in REGIONAL_RULES else "household"


_H, _M, _L = Severity.HIGH, Severity.MEDIUM, Severity.LOW

_DOCS: tuple[RuleDoc, ...] = (
    RuleDoc(
        Rule.DEATH_IN_HOUSEHOLD, "家庭成员死亡",
        "户籍变动 变动类型为 死亡 或 注销、交通事故 伤亡情况为 死亡、重点慢病 管理状态为 死亡："
        "按最早报告的日期计算年龄，{death_working_age_min}–{death_working_age_max} 岁（劳动年龄）为 HIGH，"
        "否则 MEDIUM。同一人无论几个部门报告，只产生一条预警，各部门的事件都作为证据。",
        "A member died: a registration change 死亡 or 注销, a traffic accident with 伤亡情况 死亡, or a "
        "chronic-disease row with 管理状态 死亡. HIGH if aged {death_working_age_min}–{death_working_age_max} "
        "(working age) at the earliest reported date, else MEDIUM. One alert per person, whichever departments "
        "report it, with every department's event as evidence.",
        ("death_working_age_min", "death_working_age_max"),
        "the person who died",
        (Example("registration-change: the household's 户主, born 1975-04-02, 变动类型 死亡, 变动日期 2025-03-05; "
                 "a week later traffic-accident reports the same person, 伤亡情况 死亡, 事故日期 2025-03-05",
                 _H, "家庭成员(户主)死亡, 死亡日期2025-03-05, 时年49岁, 属劳动年龄(16-60岁), 家庭失去劳动力; "
                     "报告: 公安户籍变动: 死亡(2025-03-05); 公安交通事故: 死亡(2025-03-05)"),
         Example("chronic-disease: the 户主's mother, aged 78, 管理状态 死亡",
                 _M, "家庭成员(母亲)死亡, 死亡日期2025-04-10, 时年78岁, 不在劳动年龄(16-60岁); 报告: 卫健慢病管理: "
                     "死亡(2025-04-10)")),
    ),
    RuleDoc(
        Rule.MEDICAL_EXPENSE, "医疗支出",
        "住院：本次入院前 {medical_window_days} 天内（含本次）家庭住院个人自付合计达到家庭年纯收入"
        "（人均纯收入 × 家庭人口数）的 {medical_income_share} 为 HIGH；否则本次个人自付达到 "
        "{medical_stay_out_of_pocket} 元为 MEDIUM。迟到的较早住院会重新评估其窗口内较晚的住院，结果与到达顺序无关。",
        "A hospital stay: HIGH when the household's out-of-pocket total over the {medical_window_days} days up to "
        "this admission (this stay included) reaches {medical_income_share} of its annual net income (per-capita "
        "net income × household size); else MEDIUM when this stay's out-of-pocket is at least "
        "{medical_stay_out_of_pocket} CNY. A stay reported late re-judges the later stays whose window it falls "
        "in, so the outcome does not depend on arrival order.",
        ("medical_window_days", "medical_income_share", "medical_stay_out_of_pocket"),
        "the stays in the window (their event ids)",
        (Example("a household of 4, 上年人均纯收入 5,000 (annual 20,000): a stay admitted 2025-01-10 with 6,000 "
                 "out-of-pocket, then the 户主 admitted 2025-03-05 (脑梗死, 12 days) with 4,800",
                 _H, "住院个人自付4800元(入院2025-03-05, 脑梗死, 12天, 户主); 近365天家庭住院自付合计10800元(2次), "
                     "占家庭年纯收入20000元(人均5000元×4人)的54%, 达到50%"),
         Example("a household with an annual net income of 60,000: one stay with 12,000 out-of-pocket",
                 _M, "住院个人自付12000元(入院2025-05-02, 肺炎, 9天, 配偶), 单次自付达到10000元")),
    ),
    RuleDoc(
        Rule.DISASTER_LOSS, "灾害损失",
        "自然灾害损失：有死亡、房屋 严重损坏/倒塌，或直接经济损失达到家庭年纯收入的 {disaster_income_share} 为 HIGH，"
        "否则 MEDIUM。农业灾情写明户主的：直接经济损失达到家庭年纯收入的 {disaster_income_share} 为 HIGH，"
        "否则 MEDIUM。",
        "A disaster-loss row: HIGH if anyone died, the house is 严重损坏 or 倒塌, or the direct loss reaches "
        "{disaster_income_share} of the household's annual net income; else MEDIUM. A farm-disaster row naming a "
        "household: HIGH when its 直接经济损失 reaches {disaster_income_share} of the annual net income, else MEDIUM.",
        ("disaster_income_share",),
        "the event",
        (Example("disaster-loss: 洪涝 2025-06-20, 死亡 0, 受伤 2, 房屋 严重损坏, 直接经济损失 52,000, annual net "
                 "income 40,000",
                 _H, "洪涝灾害(2025-06-20): 死亡0人, 受伤2人, 房屋严重损坏, 直接经济损失52000元, "
                     "占家庭年纯收入40000元的130%; 严重: 房屋严重损坏, 损失达家庭年纯收入的50%"),
         Example("farm-disaster naming the household: 冰雹 on 棉花, 直接经济损失 8,000, annual net income 40,000",
                 _M, "农业灾情(冰雹, 2025-06-20): 受灾棉花, 受灾面积45.00亩, 绝收12.50亩, 死亡牲畜0头只, "
                     "直接经济损失8000元, 占家庭年纯收入40000元的20%")),
    ),
    RuleDoc(
        Rule.SCHOOL_DROPOUT, "义务教育辍学",
        "辍学登记，或在校生信息 在校状态为 辍学，且学段为 小学/初中：HIGH（高中、中职等：无）。同一学生同一学年"
        "（9 月 1 日至次年 8 月 31 日）只产生一条预警，无论哪个数据报告。",
        "A dropout row, or a student-roll row with 在校状态 辍学, at 小学 or 初中: HIGH (other stages: none). One "
        "alert per child and school year (1 September – 31 August), whichever feed reports it.",
        (),
        "the child and the school year",
        (Example("dropout: the 户主's daughter, 初中 八年级, 辍学日期 2025-03-11; student-roll later reports her "
                 "辍学 too",
                 _H, "义务教育阶段辍学: 初中八年级, 博乐市第三中学, 辍学日期2025-03-11(2024-2025学年), 学生13岁(女); "
                     "报告: 教育辍学登记、在校生学籍"),
         Example("dropout: a son at 高中", None)),
    ),
    RuleDoc(
        Rule.ASSET_PURCHASE, "资产购置",
        "仅限监测中家庭，LOW：购买车辆；登记 商品住房/二手住房/商铺；购置农机且 购买金额 − 补贴金额 ≥ "
        "{machinery_net_price} 元；任 有限责任公司 法定代表人；存款余额 ≥ 家庭年纯收入的 {deposit_income_share}。"
        "供数据比对环节核查。",
        "Monitored households only, LOW: a vehicle bought; 商品住房, 二手住房 or 商铺 registered; farm machinery "
        "with 购买金额 − 补贴金额 ≥ {machinery_net_price} CNY; 法定代表人 of a 有限责任公司; 存款余额 ≥ "
        "{deposit_income_share} of the household's annual net income. For the data-comparison step.",
        ("machinery_net_price", "deposit_income_share"),
        "the event",
        (Example("machinery-purchase by a member of a household 监测中: 拖拉机, 购买金额 168,000, 补贴金额 32,400",
                 _L, "监测中家庭成员(户主)购置农机: 东方红LX904, 购买金额168000元, 补贴32400元, 自付135600元"
                     "(达到50000元); 请在数据比对环节核查家庭资产"),
         Example("the same purchase in a household 未纳入", None)),
    ),
    RuleDoc(
        Rule.INCOME_BELOW_LINE, "收入低于监测标准",
        "住户收入：人均纯收入低于本县（行政区划代码前 6 位）该年度的监测标准（默认 {income_lines} 元）：家庭 未纳入 或 "
        "风险消除 为 HIGH，监测中 为 MEDIUM。每户每年度一条预警。",
        "A household-income row: 人均纯收入 below the line of the household's county (the first 6 digits of its "
        "village code) for that 年度 (default {income_lines} CNY): HIGH when the household is 未纳入 or 风险消除, "
        "MEDIUM when 监测中. One alert per household and 年度.",
        ("income_lines",),
        "the 年度",
        (Example("household-income 2024 of a household 未纳入 in county 652701: 人均纯收入 8,200, 家庭纯收入 32,800, "
                 "4 persons; line 9,000",
                 _H, "人均纯收入8200元, 低于2024年本县(652701)标准9000元; 家庭未纳入监测(家庭纯收入32800元, 4人)"),),
    ),
    RuleDoc(
        Rule.INCOME_DROP, "收入大幅下降",
        "住户收入不低于监测标准，但人均纯收入低于同一家庭上一年度（同一数据）的 {income_drop_share}：MEDIUM。"
        "无论哪一年先到，结果相同。",
        "Not below the line, but 人均纯收入 below {income_drop_share} of the same household's figure for 年度 − 1 "
        "(from the same feed): MEDIUM. The same alerts whichever year arrives first.",
        ("income_drop_share",),
        "the 年度 (the later of the two years)",
        (Example("household-income 2023: 人均纯收入 16,000; household-income 2024: 人均纯收入 10,000 (line 9,000), "
                 "in either order",
                 _M, "人均纯收入10000元(2024年), 较上年16000元下降38%, 低于上年的70%"),),
    ),
    RuleDoc(
        Rule.JOB_LOSS, "务工中断",
        "务工就业 填写了 务工结束日期，且结束后 {job_gap_days} 天内没有同一人新的务工开始日期：MEDIUM。",
        "An employment row with 务工结束日期 and no employment row of the same person whose 务工开始日期 lies within "
        "{job_gap_days} days after it: MEDIUM.",
        ("job_gap_days",),
        "the person and the end date",
        (Example("employment: the 户主 worked at 江苏某纺织有限公司 until 2025-06-15; no new job by 2025-08-14",
                 _M, "家庭成员(户主)务工结束(江苏某纺织有限公司, 2025-06-15)后60天内未再就业, 家庭可能失去工资性收入"),
         Example("the same, and a row starting 2025-07-20 at another employer", None)),
        timer="MEDIUM once {job_gap_days} days have passed after 务工结束日期 without a new job; a new job "
              "starting within them cancels it",
    ),
    RuleDoc(
        Rule.HOUSING_UNSAFE, "住房不安全",
        "住房安全：鉴定等级 D 或损毁程度 倒塌 为 HIGH；鉴定等级 C 或 严重损坏 为 MEDIUM；事由为 改造竣工 的不预警。",
        "A house-safety row: 鉴定等级 D or 损毁程度 倒塌: HIGH; 鉴定等级 C or 严重损坏: MEDIUM; 事由 改造竣工: none.",
        (),
        "the event",
        (Example("house-safety: 事由 自然灾害, 鉴定等级 C, 损毁程度 严重损坏, 2025-06-22",
                 _M, "住房安全: 鉴定等级C级, 损毁程度严重损坏(事由: 自然灾害, 2025-06-22), 住房安全无保障"),
         Example("house-safety: 事由 改造竣工, 鉴定等级 A", None)),
    ),
    RuleDoc(
        Rule.WATER_UNSAFE, "饮水不安全",
        "安全饮水 写明户主且无解决日期：MEDIUM；发现日期后 {water_unsolved_days} 天仍未解决：HIGH。"
        "填写了解决日期的行不预警，并取消等待。",
        "A drinking-water row naming a household, without 解决日期: MEDIUM; HIGH once unsolved "
        "{water_unsolved_days} days after 发现日期. A row with 解决日期 raises nothing and cancels the wait.",
        ("water_unsolved_days",),
        "the 发现日期",
        (Example("drinking-water naming the household: 问题指标 水质, 发现日期 2025-05-06, no 解决日期",
                 _M, "饮水安全问题(水质), 发现日期2025-05-06, 尚未解决"),
         Example("no row with a 解决日期 by 2025-06-05",
                 _H, "饮水安全问题(水质), 发现日期2025-05-06, 尚未解决, 已超过30天")),
        timer="HIGH once {water_unsolved_days} days have passed after 发现日期 unsolved; a row with 解决日期 "
              "cancels it",
    ),
    RuleDoc(
        Rule.ACCIDENT_INJURY, "意外重伤",
        "交通事故 重伤：{death_working_age_min}–{death_working_age_max} 岁为 HIGH，否则 MEDIUM；轻伤 不预警。",
        "A traffic accident with 重伤: HIGH if aged {death_working_age_min}–{death_working_age_max}, else MEDIUM; "
        "轻伤: none.",
        ("death_working_age_min", "death_working_age_max"),
        "the event",
        (Example("traffic-accident: the 户主, aged 58, 伤亡情况 重伤, 2025-02-14",
                 _H, "家庭成员(户主)交通事故重伤(2025-02-14), 时年58岁, 属劳动年龄(16-60岁), 家庭劳动力受损"),
         Example("traffic-accident: 伤亡情况 轻伤", None)),
    ),
    RuleDoc(
        Rule.SERIOUS_ILLNESS, "大病",
        "大病专项救治：救治中 为 MEDIUM，放弃救治 为 HIGH，已救治 不预警。",
        "A serious-illness row: 救治中 MEDIUM; 放弃救治 HIGH; 已救治 none.",
        (),
        "the person, the 病种 and the 救治开始日期",
        (Example("serious-illness: the 户主, 急性白血病, 博尔塔拉蒙古自治州人民医院, 救治开始 2025-04-09, 救治中",
                 _M, "家庭成员(户主)患大病(急性白血病), 博尔塔拉蒙古自治州人民医院, 救治开始2025-04-09, 救治中"),
         Example("the same treatment later reported 放弃救治",
                 _H, "家庭成员(户主)患大病(急性白血病), 博尔塔拉蒙古自治州人民医院, 救治开始2025-04-09, 放弃救治")),
    ),
    RuleDoc(
        Rule.CHRONIC_DISEASE, "重点慢病",
        "重点慢病：病种为 结核病 或 严重精神障碍 且管理状态 在管 为 MEDIUM；任何病种管理状态 失访 为 LOW。",
        "A chronic-disease row: 结核病 or 严重精神障碍 with 管理状态 在管: MEDIUM; any 病种 with 管理状态 失访: LOW.",
        (),
        "the person, the 病种 and the status class (在管 or 失访)",
        (Example("chronic-disease: the 户主's son, 严重精神障碍, 确诊 2024-11-02, 在管",
                 _M, "家庭成员(子)患严重精神障碍(确诊2024-11-02), 管理状态: 在管"),
         Example("chronic-disease: 糖尿病, 失访", _L, "家庭成员(配偶)患糖尿病(确诊2023-05-18), 管理状态: 失访"),
         Example("chronic-disease: 高血压, 在管", None)),
    ),
    RuleDoc(
        Rule.SEVERE_DISABILITY, "重度残疾",
        "残疾人证：证件状态 有效 且残疾等级 一级/二级：MEDIUM。",
        "A disability certificate with 证件状态 有效 and 残疾等级 一级 or 二级: MEDIUM.",
        (),
        "the person",
        (Example("disability-certificate: the 户主's father, 肢体 二级, 发证 2025-05-14, 有效",
                 _M, "家庭成员(父亲)持有效残疾人证, 残疾等级二级(发证2025-05-14), 重度残疾"),
         Example("disability-certificate: 三级, 有效", None)),
    ),
    RuleDoc(
        Rule.SAFETY_NET, "社会救助变动",
        "社会救助：监测中家庭 退出 低保/特困供养 为 MEDIUM；临时救助 发放 为 MEDIUM；未纳入监测的家庭 纳入 "
        "低保/特困供养 为 MEDIUM。",
        "An assistance row: 退出 of 低保 or 特困供养 in a household 监测中: MEDIUM; 临时救助 发放: MEDIUM; 纳入 of "
        "低保 or 特困供养 in a household 未纳入: MEDIUM.",
        (),
        "the event",
        (Example("assistance: 临时救助 发放 1,500 to the 户主, 开始日期 2025-02-01",
                 _M, "社会救助: 家庭成员(户主)发放临时救助1500元(开始日期2025-02-01)"),
         Example("assistance: 低保 纳入 in a household 监测中", None)),
    ),
    RuleDoc(
        Rule.INSURANCE_GAP, "医保断保",
        "参保信息：险种 基本医疗保险 且参保状态 未参保 或 停保：MEDIUM。",
        "An insurance row: 险种 基本医疗保险 with 参保状态 未参保 or 停保: MEDIUM.",
        (),
        "the person and the 年度",
        (Example("insurance 2025: the 户主's wife, 基本医疗保险, 停保",
                 _M, "家庭成员(配偶)2025年度基本医疗保险停保, 看病就医缺少保障"),),
    ),
    RuleDoc(
        Rule.LOAN_OVERDUE, "小额信贷逾期",
        "存贷款：贷款类型 脱贫人口小额信贷，贷款到期日期早于比对日期，且贷款余额大于 0：MEDIUM。",
        "A deposit-loan row: 贷款类型 脱贫人口小额信贷, 贷款到期日期 before the 比对日期, 贷款余额 > 0: MEDIUM.",
        (),
        "the person, the 贷款发放日期 and the 贷款到期日期",
        (Example("deposit-loan: the 户主, 脱贫人口小额信贷 issued 2022-04-10, due 2025-04-09, 比对日期 2025-06-30, "
                 "贷款余额 20,000",
                 _M, "家庭成员(户主)脱贫人口小额信贷逾期: 到期日期2025-04-09, 比对日期2025-06-30贷款余额20000元"),),
    ),
    RuleDoc(
        Rule.REPORTED_RISK, "报告风险",
        "农户自主申报：MEDIUM；基层干部排查：存在风险 为 MEDIUM，已返贫 为 HIGH，正常 不预警；社会信息补充：MEDIUM；"
        "网络舆情线索写明涉及人员的：MEDIUM。",
        "A self-declaration: MEDIUM; a cadre visit: 存在风险 MEDIUM, 已返贫 HIGH, 正常 none; a social clue: "
        "MEDIUM; a public-opinion clue naming a person: MEDIUM.",
        (),
        "the event",
        (Example("cadre-visit: 风险类型 因病, 走访结果 已返贫, 2025-03-05",
                 _H, "基层干部排查(2025-03-05): 风险类型因病, 走访结论: 已返贫; "
                     "内容: 户主住院后无劳动力, 家庭收入锐减"),
         Example("cadre-visit: 走访结果 正常", None)),
    ),
    RuleDoc(
        Rule.REGIONAL_DISASTER, "区域性灾害",
        "同一村 {regional_window_days} 天内（最晚 − 最早 ≤ {regional_window_days} 天）有至少 {regional_min_households} "
        "个不同家庭报告自然灾害损失或农业灾情（两个数据合并计数，每户只计一次）：HIGH，每村每个固定时段一条。"
        "另：村级农业灾情一行 绝收面积 ≥ {village_lost_area_mu} 亩 或 死亡牲畜 ≥ {village_livestock_deaths} 头只，"
        "单独即为 HIGH。",
        "At least {regional_min_households} distinct households of one village with disaster-loss or farm-disaster "
        "rows (both feeds counted together, a household once) dated within {regional_window_days} days (latest − "
        "earliest ≤ {regional_window_days}): HIGH, one alert per village and fixed period. Also a village-level "
        "farm-disaster row with 绝收面积 ≥ {village_lost_area_mu} 亩 or 死亡牲畜 ≥ {village_livestock_deaths} on "
        "its own: HIGH.",
        ("regional_min_households", "regional_window_days", "village_lost_area_mu", "village_livestock_deaths"),
        "the village and the fixed period (regional_window_days + 1 days, counted from 0001-01-01) in which a "
        "qualifying window starts; for a village-level row, the row",
        (Example("disaster-loss and farm-disaster rows of 5 different households of village 652701100201 dated "
                 "2025-06-20 to 2025-06-24",
                 _H, "区域性灾害风险: 村(社区)652701100201在2025-06-20至2025-06-24期间有5户监测家庭报告灾害损失"
                     "(阈值5户/7天), 防止规模性返贫"),
         Example("a village-level farm-disaster row: 干旱, 绝收面积 320 亩",
                 _H, "村级农业灾情(干旱, 2025-07-02): 村(社区)652701100201绝收面积320亩(阈值100亩), 防止规模性返贫")),
    ),
    RuleDoc(
        Rule.REGIONAL_WATER, "区域性饮水问题",
        "安全饮水 未写明户主（整村）：未解决 为 MEDIUM，发现日期后 {water_unsolved_days} 天仍未解决 为 HIGH。",
        "A drinking-water row naming no household (the whole village): unsolved MEDIUM; HIGH once unsolved "
        "{water_unsolved_days} days after 发现日期.",
        ("water_unsolved_days",),
        "the village and the 发现日期",
        (Example("drinking-water for village 652701100201, no 户主: 问题指标 水量、供水保证率, 发现日期 2025-05-06",
                 _M, "村(社区)652701100201饮水安全问题(水量、供水保证率), 发现日期2025-05-06, 尚未解决"),),
        timer="HIGH once {water_unsolved_days} days have passed after 发现日期 unsolved; a row with 解决日期 "
              "cancels it",
    ),
    RuleDoc(
        Rule.REGIONAL_RETURNS, "区域性返乡",
        "同一乡镇（行政区划代码前 9 位）至少 {returns_min_persons} 个不同的人的务工结束日期在 {returns_window_days} "
        "天内：MEDIUM。",
        "At least {returns_min_persons} distinct persons of one township (the first 9 digits of the village code) "
        "whose 务工结束日期 lie within {returns_window_days} days: MEDIUM.",
        ("returns_min_persons", "returns_window_days"),
        "the township and the fixed period",
        (Example("employment rows of 12 persons of township 652701100 whose 务工结束日期 lie between 2025-01-05 "
                 "and 2025-01-28",
                 _M, "区域性返乡: 乡镇652701100在2025-01-05至2025-01-28期间有12人务工结束返乡(阈值10人/30天)"),),
    ),
    RuleDoc(
        Rule.REGIONAL_ILLNESS, "区域性疾病",
        "同一村至少 {illness_min_households} 个不同家庭有同一疾病名称的住院，入院日期在 {illness_window_days} "
        "天内：MEDIUM。",
        "At least {illness_min_households} distinct households of one village with stays of the same 疾病名称 "
        "admitted within {illness_window_days} days: MEDIUM.",
        ("illness_min_households", "illness_window_days"),
        "the village, the disease and the fixed period",
        (Example("hospitalisations for 布鲁氏菌病 in 6 households of village 652701100201, admitted 2025-04-02 to "
                 "2025-04-11",
                 _M, "区域性疾病: 村(社区)652701100201在2025-04-02至2025-04-11期间有6户因布鲁氏菌病住院"
                     "(阈值5户/14天)"),),
    ),
    RuleDoc(
        Rule.REGIONAL_RISK_CLUSTER, "区域性风险聚集",
        "同一村至少 {cluster_min_households} 个不同家庭在 {cluster_window_days} 天内有 HIGH 级家庭预警：HIGH。",
        "At least {cluster_min_households} distinct households of one village with HIGH household alerts dated "
        "within {cluster_window_days} days: HIGH.",
        ("cluster_min_households", "cluster_window_days"),
        "the village and the fixed period",
        (Example("HIGH household alerts (any rules) for 5 households of village 652701100201 dated 2025-03-01 to "
                 "2025-03-25",
                 _H, "区域性风险聚集: 村(社区)652701100201在2025-03-01至2025-03-25期间有5户出现高风险预警"
                     "(阈值5户/30天)"),),
    ),
    RuleDoc(
        Rule.COLLECTIVE_INCOME_DROP, "村集体收益下降",
        "村集体可分配收益低于上年可分配收益的 {collective_drop_share}：MEDIUM；上年大于 0 而本年为 0：HIGH。",
        "A collective-income row: 可分配收益 below {collective_drop_share} of 上年可分配收益: MEDIUM; 0 while "
        "上年可分配收益 > 0: HIGH.",
        ("collective_drop_share",),
        "the village and the 年度",
        (Example("collective-income 2024 of village 652701100201: 可分配收益 200,000, 上年可分配收益 352,000",
                 _M, "村集体可分配收益200000元(2024年), 较上年352000元下降43%, 低于上年的70%"),
         Example("可分配收益 0, 上年可分配收益 352,000",
                 _H, "村集体可分配收益为0(2024年), 上年为352000元")),
    ),
)

RULE_DOCS: dict[Rule, RuleDoc] = {doc.rule: doc for doc in _DOCS}


def placeholders(template: str) -> list[str]:
    """The `{name}`s of a condition template, in order."""
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def shown(name: str, value: Any) -> str:
    """A threshold's value as a condition shows it: shares in per cent, amounts with thousands separators, the
    income lines by their default."""
    if isinstance(value, IncomeLines):
        return shown("income_line", value.default)
    if isinstance(value, Decimal):
        if name.endswith("_share"):
            return f"{(value * 100).normalize():f}%"
        return f"{value.normalize():,f}"
    return str(value)


def _filled(template: str, doc: RuleDoc, cfg: RuleConfig) -> str:
    return template.format_map({name: shown(name, getattr(cfg, name)) for name in doc.thresholds})


def conditions(doc: RuleDoc, cfg: RuleConfig) -> tuple[str, str]:
    """The rule's condition in Chinese and in English with the thresholds of `cfg` filled in."""
    return _filled(doc.condition_zh, doc, cfg), _filled(doc.condition_en, doc, cfg)


def timer_text(doc: RuleDoc, cfg: RuleConfig) -> str:
    """What the rule's timer judges, with the thresholds of `cfg` ('' for a rule without a timer)."""
    return _filled(doc.timer, doc, cfg)


def json_value(value: Any) -> Any:
    """A threshold as JSON: numbers as numbers, the income lines as {default, counties: {code: {year: line}}}."""
    if isinstance(value, IncomeLines):
        return {"default": json_value(value.default),
                "counties": {county: {str(year): json_value(line) for year, line in sorted(years.items())}
                             for county, years in sorted(value.counties.items())}}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def thresholds_of(cfg: RuleConfig) -> dict[str, Any]:
    """Every threshold by name, in RuleConfig's order."""
    return {name: getattr(cfg, name) for name in RuleConfig.model_fields}


def threshold_users() -> dict[str, list[Rule]]:
    """Each threshold and the rules that use it (the general ones: none)."""
    users: dict[str, list[Rule]] = {name: [] for name in RuleConfig.model_fields}
    for doc in _DOCS:
        for name in doc.thresholds:
            users[name].append(doc.rule)
    return users


def _feed_json(feed: Feed) -> dict[str, Any]:
    return {"department": feed.department, "feed": feed.feed, "title": feed.title, "topic": feed.topic,
            "yearly": feed.yearly}


def rules_listing(cfg: RuleConfig) -> list[dict[str, Any]]:
    """Every rule, household rules first (in `Rule` order), with its feeds and its conditions under `cfg`."""
    out = []
    for rule in (*HOUSEHOLD_RULES, *(r for r in Rule if r in REGIONAL_RULES)):
        doc = RULE_DOCS[rule]
        feeds = feeds_of_rule(rule)
        zh, en = conditions(doc, cfg)
        out.append({
            "rule": rule.value, "title": doc.title, "scope": doc.scope,
            "feeds": [_feed_json(feed) for feed in feeds],
            "input": "the monitor's HIGH household alerts" if not feeds else "feeds",
            "condition_zh": zh, "condition_en": en,
            "thresholds": {name: json_value(getattr(cfg, name)) for name in doc.thresholds},
            "fact": doc.fact, "timer": timer_text(doc, cfg) or None,
            "examples": [{"given": e.given, "severity": e.severity.value if e.severity else None, "reason": e.reason}
                         for e in doc.examples],
        })
    return out


def render_rules_json(cfg: RuleConfig, rules_file: str | None) -> str:
    return json.dumps({
        "rules": rules_listing(cfg),
        "thresholds": {name: json_value(value) for name, value in thresholds_of(cfg).items()},
        "defaults": {name: json_value(value) for name, value in thresholds_of(RuleConfig()).items()},
        "rules_file": rules_file,
    }, ensure_ascii=False)


def _in_force(name: str, value: Any) -> str:
    if isinstance(value, IncomeLines):
        counties = len(value.counties)
        return f"default {shown(name, value)}" + (f" and {counties} count{'y' if counties == 1 else 'ies'}' own"
                                                    if counties else "")
    return shown(name, value)


def _income_lines_text(lines: IncomeLines) -> list[str]:
    out = [f"  default  {shown('income_line', lines.default)}"]
    for county, years in sorted(lines.counties.items()):
        out.append(f"  {county}   " + ", ".join(f"{year}: {shown('income_line', line)}"
                                               for year, line in sorted(years.items())))
    return out


def render_rules_text(cfg: RuleConfig, rules_file: str | None) -> str:
    """`povwatch rules list`: every rule with its feeds and conditions, then the thresholds in force."""
    lines: list[str] = []
    for entry in rules_listing(cfg):
        lines.append(f"{entry['rule']} {entry['title']} ({entry['scope']})")
        if entry["feeds"]:
            lines.append("  feeds: " + " · ".join(f"{f['department']} {f['feed']} {f['title']}"
                                                  for f in entry["feeds"]))
        else:
            lines.append(f"  input: {entry['input']}")
        lines.append(f"  条件: {entry['condition_zh']}")
        lines.append(f"  condition: {entry['condition_en']}")
        lines.append(f"  one alert per: {entry['fact']}")
        if entry["timer"]:
            lines.append(f"  timer: {entry['timer']}")
        if entry["thresholds"]:
            lines.append("  thresholds: " + ", ".join(f"{name} = {_in_force(name, getattr(cfg, name))}"
                                                      for name in entry["thresholds"]))
        lines.append("")
    defaults = RuleConfig()
    lines.append("thresholds in force (POVWATCH_RULES__<NAME> over "
                 + (f"the rules file {rules_file}" if rules_file else "the defaults; no POVWATCH_RULES_FILE") + "):")
    rows = []
    for name, value in thresholds_of(cfg).items():
        if name == "income_lines":
            continue
        default = getattr(defaults, name)
        note = "" if value == default else f"  (default {shown(name, default)})"
        rows.append((name, f"{shown(name, value)}{note}"))
    lines += render_table(None, rows, indent="  ").split("\n")
    lines.append("income lines (人均纯收入, CNY per person and year; a county or year not listed has the default):")
    lines.extend(_income_lines_text(cfg.income_lines))
    return "\n".join(lines)
