import numpy as np
from tests.test_cloudmask import ukis, UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH, scores
from musyq.cloudmask import MaskInputs, compute_mask, learn_thresholds
from musyq.output import CLOUD_SHADOW, CLOUD
for name in ("landsat5", "landsat7"):
    refl, ref = ukis(name)
    learnt = learn_thresholds(MaskInputs(refl, UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH[name], 30.0))
    for axis in (0, 1):
        cut = lambda a, s: a[s] if axis == 0 else a[:, s]
        for halo in (0, 50, 100):
            parts = (slice(0, 300 + halo), slice(212 - halo, 512))
            masks = [compute_mask(MaskInputs({k: np.ascontiguousarray(cut(v, p)) for k, v in refl.items()}, UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH[name], 30.0), thresholds=learnt) for p in parts]
            a = cut(masks[0].quality, slice(212, 300)); b = cut(masks[1].quality, slice(halo, halo + 88))
            print(f"{name} axis {axis} halo {halo*30/1000:.1f} km: shadow agreement {((a == CLOUD_SHADOW) == (b == CLOUD_SHADOW)).mean():.3f} cloud {((a == CLOUD) == (b == CLOUD)).mean():.3f} all {(a==b).mean():.3f}")
