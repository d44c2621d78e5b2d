from twisted.application.service import ServiceMaker

rtmprelay = ServiceMaker(
    "rtmprelay",
    "rtmprelay.tap",
    "RTMP relay that cleans dirty live streams and forwards them or serves them",
    "rtmprelay",
)
