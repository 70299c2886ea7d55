"""SMAC (Rahman & Dedieu 1994), an independent atmospheric correction to cross-check the 6S tables.

Equations as in the published Python SMAC; coefficient files in the legacy 49-number format.
"""

from __future__ import annotations

import math
from pathlib import Path


def read_coefficients(path: Path) -> dict[str, float]:
    values = [float(v) for v in path.read_text().split()]
    names = ("ah2o nh2o ao3 no3 ao2 no2 po2 aco2 nco2 pco2 ach4 nch4 pch4 ano2 nno2 pno2 aco nco pco "
             "a0s a1s a2s a3s a0T a1T a2T a3T taur sr a0taup a1taup wo gc a0P a1P a2P a3P a4P "
             "Rest1 Rest2 Rest3 Rest4 Resr1 Resr2 Resr3 Resa1 Resa2 Resa3 Resa4").split()
    assert len(values) == len(names) == 49
    return dict(zip(names, values, strict=True))


def smac_inverse(r_toa: float, sza: float, saa: float, vza: float, vaa: float, pressure: float, aot550: float,
                 ozone: float, water: float, c: dict[str, float]) -> float:
    cdr = math.pi / 180
    us, uv = math.cos(sza * cdr), math.cos(vza * cdr)
    peq = pressure / 1013.25
    m = 1 / us + 1 / uv
    taup = c["a0taup"] + c["a1taup"] * aot550
    tg = 1.0
    amounts = {"o3": ozone, "h2o": water, "o2": peq ** c["po2"], "co2": peq ** c["pco2"], "ch4": peq ** c["pch4"],
               "no2": peq ** c["pno2"], "co": peq ** c["pco"]}
    for gas, amount in amounts.items():
        tg *= math.exp(c[f"a{gas}"] * (amount * m) ** c[f"n{gas}"])
    s = c["a0s"] * peq + c["a3s"] + c["a1s"] * aot550 + c["a2s"] * aot550**2
    ttetas = c["a0T"] + c["a1T"] * aot550 / us + (c["a2T"] * peq + c["a3T"]) / (1 + us)
    ttetav = c["a0T"] + c["a1T"] * aot550 / uv + (c["a2T"] * peq + c["a3T"]) / (1 + uv)
    cksi = -(us * uv + math.sqrt(1 - us * us) * math.sqrt(1 - uv * uv) * math.cos((saa - vaa) * cdr))
    cksi = min(max(cksi, -1.0), 1.0)
    ksid = math.acos(cksi) / cdr
    ray_phase = 0.7190443 * (1 + cksi * cksi) + 0.0412742
    taurz = c["taur"] * peq
    ray_ref = taurz * ray_phase / (4 * us * uv)
    x = c["taur"] * ray_phase / (us * uv)
    res_ray = c["Resr1"] + c["Resr2"] * x + c["Resr3"] * x * x
    aer_phase = c["a0P"] + c["a1P"] * ksid + c["a2P"] * ksid**2 + c["a3P"] * ksid**3 + c["a4P"] * ksid**4
    wo, gc = c["wo"], c["gc"]
    ak2 = (1 - wo) * (3 - wo * 3 * gc)
    ak = math.sqrt(ak2)
    e = -3 * us * us * wo / (4 * (1 - ak2 * us * us))
    f = -(1 - wo) * 3 * gc * us * us * wo / (4 * (1 - ak2 * us * us))
    dp = e / (3 * us) + us * f
    d = e + f
    b = 2 * ak / (3 - wo * 3 * gc)
    delta = math.exp(ak * taup) * (1 + b) ** 2 - math.exp(-ak * taup) * (1 - b) ** 2
    ww = wo / 4
    ss = us / (1 - ak2 * us * us)
    q1 = 2 + 3 * us + (1 - wo) * 3 * gc * us * (1 + 2 * us)
    q2 = 2 - 3 * us - (1 - wo) * 3 * gc * us * (1 - 2 * us)
    q3 = q2 * math.exp(-taup / us)
    c1 = ((ww * ss) / delta) * (q1 * math.exp(ak * taup) * (1 + b) + q3 * (1 - b))
    c2 = -((ww * ss) / delta) * (q1 * math.exp(-ak * taup) * (1 - b) + q3 * (1 + b))
    cp1 = c1 * ak / (3 - wo * 3 * gc)
    cp2 = -c2 * ak / (3 - wo * 3 * gc)
    z = d - wo * 3 * gc * uv * dp + wo * aer_phase / 4
    xx = c1 - wo * 3 * gc * uv * cp1
    y = c2 - wo * 3 * gc * uv * cp2
    aa1 = uv / (1 + ak * uv)
    aa2 = uv / (1 - ak * uv)
    aa3 = us * uv / (us + uv)
    aer_ref = (xx * aa1 * (1 - math.exp(-taup / aa1)) + y * aa2 * (1 - math.exp(-taup / aa2))
               + z * aa3 * (1 - math.exp(-taup / aa3))) / (us * uv)
    q = taup * m * cksi
    res_aer = (c["Resa1"] + c["Resa2"] * q + c["Resa3"] * q**2) + c["Resa4"] * q**3
    tautot = taup + taurz
    q6 = tautot * m * cksi
    res_6s = (c["Rest1"] + c["Rest2"] * q6 + c["Rest3"] * q6**2) + c["Rest4"] * q6**3
    atm_ref = ray_ref - res_ray + aer_ref - res_aer + res_6s
    r1 = r_toa - atm_ref * tg
    return r1 / (tg * ttetas * ttetav + r1 * s)
