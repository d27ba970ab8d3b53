//! `wechat-gate mock-api`: a local stand-in for api.weixin.qq.com (being written).
