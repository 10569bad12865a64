"""The stages of one scan, each with a public entry point, run in this order by the session:

- :mod:`~s2l_scan.stages.encode`: audit images and captions → latents and text conditioning;
- :mod:`~s2l_scan.stages.baselines`: every attack on the released model → result rows;
- :mod:`~s2l_scan.stages.extraction`: generations of the released model → extraction records;
- :mod:`~s2l_scan.stages.probes`: every S2L probe's shaken copy, re-attacked (and extracted).

They share what is scanned (:class:`~s2l_scan.stages.encode.Subject`) and where units of work
are stored and computed (:class:`~s2l_scan.stages.runtime.Runtime`). Stages measure; the gate
(:mod:`s2l_scan.gate`) judges.
"""
