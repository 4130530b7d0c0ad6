"""All-in-one's data: MSR-VTT read from the raw mp4 videos as the MELTR fork reads it (:mod:`data.allinone.msrvtt`)."""

from data.allinone.msrvtt import SAMPLE_KEYS, AllInOneDataConfig, AllInOneMSRVTT, build_msrvtt

__all__ = ["SAMPLE_KEYS", "AllInOneDataConfig", "AllInOneMSRVTT", "build_msrvtt"]
