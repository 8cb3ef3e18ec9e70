from rest_framework.routers import SimpleRouter

from tests.testapp.views_w11 import IssuedShortTtlProbeViewSet

router = SimpleRouter()
router.register("issued-ttl-probe", IssuedShortTtlProbeViewSet, basename="issued-ttl-probe")

urlpatterns = router.urls
