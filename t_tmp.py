import numpy as np
from tests.test_cloudmask import ukis, scores, UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH, UKIS_BANDS, VNIR
from musyq.cloudmask import MaskInputs, with_bands, compute_mask
for cb in (0, 30, 60, 90):
  for sb in (30, 60, 90):
    row=[]
    for name in ("landsat5","landsat7"):
      for bands in (UKIS_BANDS, VNIR):
        refl, ref = ukis(name)
        inputs = with_bands(MaskInputs(refl, UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH[name], 30.0), bands)
        s = scores(compute_mask(inputs, cloud_buffer_m=cb, shadow_buffer_m=sb).quality, ref)
        row.append(f"{s['accuracy']:.3f} c{s['cloud_precision']:.2f}/{s['cloud_recall']:.2f} s{s['shadow_precision']:.2f}/{s['shadow_recall']:.2f}")
    print(cb, sb, " | ".join(row))
