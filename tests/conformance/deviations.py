"""Differences between the `catalogue="docs"` sandbox and the captured answers of the docs, with reasons.

test_replay.py checks this list both ways (a new difference fails, a listed one that no longer occurs fails);
docs/sandbox-deviations.md is made from it (test_deviation_doc_is_current).
"""

from __future__ import annotations

KNOWN: dict[str, dict[str, str]] = {
    "v2 app.info": {
        ".: documented keys missing: result, time": (
            "Not served by the sandbox (ERROR_METHOD_NOT_FOUND). The product does not call it (it only lists it as a read method for retries)."
        ),
        ".: keys not documented: error, error_description": (
            "Not served by the sandbox (ERROR_METHOD_NOT_FOUND). The product does not call it (it only lists it as a read method for retries)."
        ),
        "HTTP status: documented 200, sandbox 404": (
            "Not served by the sandbox (ERROR_METHOD_NOT_FOUND). The product does not call it (it only lists it as a read method for retries)."
        ),
    },
    "v2 batch": {
        ".result.result: keys not documented: get_departments": (
            "The documented batch sends its department.get command as `get_departments` but its answer keys it `get_department`; the sandbox keys every result by the command name sent. The result_error entry is app.info's, which the sandbox does not serve (PHP prints an empty array as [] and a filled one as an object)."
        ),
        ".result.result_time: keys not documented: get_departments": (
            "The documented batch sends its department.get command as `get_departments` but its answer keys it `get_department`; the sandbox keys every result by the command name sent. The result_error entry is app.info's, which the sandbox does not serve (PHP prints an empty array as [] and a filled one as an object)."
        ),
        ".result.result_total: documented keys missing: get_department": (
            "The documented batch sends its department.get command as `get_departments` but its answer keys it `get_department`; the sandbox keys every result by the command name sent. The result_error entry is app.info's, which the sandbox does not serve (PHP prints an empty array as [] and a filled one as an object)."
        ),
        ".result.result_total: keys not documented: get_departments": (
            "The documented batch sends its department.get command as `get_departments` but its answer keys it `get_department`; the sandbox keys every result by the command name sent. The result_error entry is app.info's, which the sandbox does not serve (PHP prints an empty array as [] and a filled one as an object)."
        ),
        ".result.result.get_user: documented keys missing: TIMESTAMP_X": (
            "The batch page's user.current row shows TIMESTAMP_X; the user.current page's own answer has none, and the sandbox follows that page."
        ),
        ".result.result.get_user: keys not documented: PERSONAL_CITY, PERSONAL_MOBILE, SECOND_NAME, TIME_ZONE, USER_TYPE, WORK_PHONE, WORK_POSITION, XML_ID": (
            "user.current rows carry the user fields the sandbox stores (SECOND_NAME, TIME_ZONE, …); the documented answers are of portals whose users have other fields filled."
        ),
        ".result.result: documented keys missing: get_department": (
            "The documented batch sends its department.get command as `get_departments` but its answer keys it `get_department`; the sandbox keys every result by the command name sent. The result_error entry is app.info's, which the sandbox does not serve (PHP prints an empty array as [] and a filled one as an object)."
        ),
        ".result.result_error: documented list, sandbox object": (
            "The documented batch sends its department.get command as `get_departments` but its answer keys it `get_department`; the sandbox keys every result by the command name sent. The result_error entry is app.info's, which the sandbox does not serve (PHP prints an empty array as [] and a filled one as an object)."
        ),
        ".result.result_time.get_user: keys not documented: operating, operating_reset_at": (
            "user.current rows carry the user fields the sandbox stores (SECOND_NAME, TIME_ZONE, …); the documented answers are of portals whose users have other fields filled."
        ),
        ".result.result_time: documented keys missing: get_department": (
            "The documented batch sends its department.get command as `get_departments` but its answer keys it `get_department`; the sandbox keys every result by the command name sent. The result_error entry is app.info's, which the sandbox does not serve (PHP prints an empty array as [] and a filled one as an object)."
        ),
    },
    "v2 crm.company.fields": {
        ".result.LEAD_ID: documented keys missing: settings": (
            "Classic field descriptions carry `settings` only where the sandbox's crm.item catalogue has them (companyId); the classic pages show them on LEAD_ID/QUOTE_ID as well."
        ),
        ".result: documented keys missing: ADDRESS, ADDRESS_2, ADDRESS_CITY, ADDRESS_COUNTRY, ADDRESS_COUNTRY_CODE, ADDRESS_LOC_ADDR_ID, ADDRESS_POSTAL_CODE, ADDRESS_PROVINCE, ADDRESS_REGION, CONTACT_ID, LAST_COMMUNICATION_TIME, LINK, PARENT_ID_156, REG_ADDRESS, REG_ADDRESS_2, REG_ADDRESS_CITY, REG_ADDRESS_COUNTRY, REG_ADDRESS_COUNTRY_CODE, REG_ADDRESS_LOC_ADDR_ID, REG_ADDRESS_POSTAL_CODE, REG_ADDRESS_PROVINCE, REG_ADDRESS_REGION, UF_CRM_1687188367, UF_CRM_64A29A1CD5CC2": (
            "Classic field set: the sandbox has no address, LINK, FACE_ID, IM or LAST_COMMUNICATION_TIME fields (classic methods serve the crm.item catalogue under UPPER_CASE names); PARENT_ID_<n> and UF_CRM_<digits> are the docs portal's own relations and user fields."
        ),
        ".result: keys not documented: CATEGORY_ID, CONTACT_IDS, EMAIL_HOME, EMAIL_MAILING, EMAIL_WORK, IMOL, OBSERVERS, PHONE_MAILING, PHONE_MOBILE, PHONE_WORK, SEARCH_CONTENT, UF_ACCOUNTANT_SIGN, UF_CRM_1721244707130, UF_CRM_1721244707131, UF_CRM_1721244707132, UF_CRM_1721244707133, UF_CRM_1721244707134, UF_CRM_1721244707135, UF_DIRECTOR_SIGN, UF_LOGO, UF_STAMP, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.company.get": {
        ".result: documented keys missing: ADDRESS, ADDRESS_2, ADDRESS_CITY, ADDRESS_COUNTRY, ADDRESS_COUNTRY_CODE, ADDRESS_LOC_ADDR_ID, ADDRESS_POSTAL_CODE, ADDRESS_PROVINCE, ADDRESS_REGION, LAST_COMMUNICATION_TIME, PARENT_ID_156, REG_ADDRESS, REG_ADDRESS_2, REG_ADDRESS_CITY, REG_ADDRESS_COUNTRY, REG_ADDRESS_COUNTRY_CODE, REG_ADDRESS_LOC_ADDR_ID, REG_ADDRESS_POSTAL_CODE, REG_ADDRESS_PROVINCE, REG_ADDRESS_REGION, UF_CRM_1687188367": (
            "Classic field set: the sandbox has no address, LINK, FACE_ID, IM or LAST_COMMUNICATION_TIME fields (classic methods serve the crm.item catalogue under UPPER_CASE names); PARENT_ID_<n> and UF_CRM_<digits> are the docs portal's own relations and user fields."
        ),
        ".result: keys not documented: CATEGORY_ID, CONTACT_IDS, EMAIL, EMAIL_HOME, EMAIL_MAILING, EMAIL_WORK, IMOL, OBSERVERS, PHONE, PHONE_MAILING, PHONE_MOBILE, PHONE_WORK, SEARCH_CONTENT, UF_ACCOUNTANT_SIGN, UF_CRM_1721244707130, UF_CRM_1721244707131, UF_CRM_1721244707132, UF_CRM_1721244707133, UF_CRM_1721244707134, UF_CRM_1721244707135, UF_DIRECTOR_SIGN, UF_LOGO, UF_STAMP, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.contact.fields": {
        ".result.COMPANY_ID: keys not documented: settings": (
            "The sandbox describes companyId with settings.parentEntityTypeId, as crm.item.fields does (crm-item-fields.md); the classic page shows no settings there."
        ),
        ".result.LEAD_ID: documented keys missing: settings": (
            "Classic field descriptions carry `settings` only where the sandbox's crm.item catalogue has them (companyId); the classic pages show them on LEAD_ID/QUOTE_ID as well."
        ),
        ".result: documented keys missing: ADDRESS, ADDRESS_2, ADDRESS_CITY, ADDRESS_COUNTRY, ADDRESS_COUNTRY_CODE, ADDRESS_LOC_ADDR_ID, ADDRESS_POSTAL_CODE, ADDRESS_PROVINCE, ADDRESS_REGION, LINK": (
            "Classic field set: the sandbox has no address, LINK, FACE_ID, IM or LAST_COMMUNICATION_TIME fields (classic methods serve the crm.item catalogue under UPPER_CASE names); PARENT_ID_<n> and UF_CRM_<digits> are the docs portal's own relations and user fields."
        ),
        ".result: keys not documented: CATEGORY_ID, EMAIL_HOME, EMAIL_MAILING, EMAIL_WORK, IMOL, OBSERVERS, PHONE_MAILING, PHONE_MOBILE, PHONE_WORK, SEARCH_CONTENT, UF_CRM_1721244707120, UF_CRM_1721244707121, UF_CRM_1721244707122, UF_CRM_1721244707123, UF_CRM_1721244707124, UF_CRM_1721244707125, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.contact.get": {
        ".result: documented keys missing: ADDRESS, ADDRESS_2, ADDRESS_CITY, ADDRESS_COUNTRY, ADDRESS_LOC_ADDR_ID, ADDRESS_POSTAL_CODE, ADDRESS_PROVINCE, ADDRESS_REGION, FACE_ID, PARENT_ID_1224, UF_CRM_1720697698689": (
            "Classic field set: the sandbox has no address, LINK, FACE_ID, IM or LAST_COMMUNICATION_TIME fields (classic methods serve the crm.item catalogue under UPPER_CASE names); PARENT_ID_<n> and UF_CRM_<digits> are the docs portal's own relations and user fields."
        ),
        ".result: keys not documented: CATEGORY_ID, COMPANY_IDS, EMAIL_HOME, EMAIL_MAILING, EMAIL_WORK, IMOL, OBSERVERS, PHONE_MAILING, PHONE_MOBILE, PHONE_WORK, SEARCH_CONTENT, UF_CRM_1721244707120, UF_CRM_1721244707121, UF_CRM_1721244707122, UF_CRM_1721244707123, UF_CRM_1721244707124, UF_CRM_1721244707125, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.contact.list": {
        ".: documented keys missing: result, time, total": (
            "crm-contact-list.md filters by IMPORT, which is no documented contact field (object-fields.md); the sandbox rejects unknown filter fields as crm.item does (INVALID_ARG_VALUE)."
        ),
        ".: keys not documented: error, error_description": (
            "crm-contact-list.md filters by IMPORT, which is no documented contact field (object-fields.md); the sandbox rejects unknown filter fields as crm.item does (INVALID_ARG_VALUE)."
        ),
        "HTTP status: documented 200, sandbox 400": (
            "crm-contact-list.md filters by IMPORT, which is no documented contact field (object-fields.md); the sandbox rejects unknown filter fields as crm.item does (INVALID_ARG_VALUE)."
        ),
    },
    "v2 crm.deal.fields": {
        ".result.LEAD_ID: documented keys missing: settings": (
            "Classic field descriptions carry `settings` only where the sandbox's crm.item catalogue has them (companyId); the classic pages show them on LEAD_ID/QUOTE_ID as well."
        ),
        ".result.QUOTE_ID: documented keys missing: settings": (
            "Classic field descriptions carry `settings` only where the sandbox's crm.item catalogue has them (companyId); the classic pages show them on LEAD_ID/QUOTE_ID as well."
        ),
        ".result: keys not documented: EVENT_DATE, EVENT_DESCRIPTION, EVENT_ID, OBSERVERS, ORDER_STAGE, SEARCH_CONTENT, UF_CRM_1721244707110, UF_CRM_1721244707111, UF_CRM_1721244707112, UF_CRM_1721244707113, UF_CRM_1721244707114, UF_CRM_1721244707115, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.deal.get": {
        ".result: documented keys missing: PARENT_ID_1220, UF_CRM_1721244482250": (
            "Portal-specific: parent relations (PARENT_ID_<n>) and user fields (UF_CRM_<digits>) of the docs' portal; the sandbox has none and six generated UF_CRM_ fields of its own."
        ),
        ".result: keys not documented: CONTACT_IDS, EVENT_DATE, EVENT_DESCRIPTION, EVENT_ID, OBSERVERS, ORDER_STAGE, SEARCH_CONTENT, UF_CRM_1721244707110, UF_CRM_1721244707111, UF_CRM_1721244707112, UF_CRM_1721244707113, UF_CRM_1721244707114, UF_CRM_1721244707115, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.item.add": {
        ".result.item: documented keys missing: begindateShort, closedateShort, dateCreateShort, dateModifyShort, eventDateShort, hasProducts, isLose, isWon, isWork, lostAmount, parentId1220, productId, receivedAmount, ufCrm_1721244707107": (
            'The documented items carry fields object-fields.md marks "Field is disabled" (dateCreateShort, isWork, productId, …) and portal-specific parentId<n>/ufCrm_<digits>; the sandbox leaves disabled fields out and has its own ufCrm_ fields.'
        ),
        ".result.item: keys not documented: ufCrm_1721244707110, ufCrm_1721244707111, ufCrm_1721244707112, ufCrm_1721244707113, ufCrm_1721244707114, ufCrm_1721244707115": (
            "The sandbox's own six ufCrm_<digits> user fields."
        ),
    },
    "v2 crm.item.fields": {
        ".result.fields: documented keys missing: contacts, mycompanyId, parentId1, parentId1248, parentId2, previousStageId, xmlId": (
            "The documented example is a smart process (entityTypeId 1268: xmlId, previousStageId, parentId<n>, mycompanyId); the replay asks for deals, whose documented fields are checked one by one in test_catalogues.py."
        ),
        ".result.fields: keys not documented: additionalInfo, closed, comments, eventDate, eventDescription, eventId, isNew, isRecurring, isRepeatedApproach, isReturnCustomer, leadId, locationId, orderStage, originId, originatorId, probability, quoteId, searchContent, stageSemanticId, typeId, ufCrm_1721244707110, ufCrm_1721244707111, ufCrm_1721244707112, ufCrm_1721244707113, ufCrm_1721244707114, ufCrm_1721244707115, utmCampaign, utmContent, utmMedium, utmSource, utmTerm": (
            "The documented example is a smart process (entityTypeId 1268: xmlId, previousStageId, parentId<n>, mycompanyId); the replay asks for deals, whose documented fields are checked one by one in test_catalogues.py."
        ),
    },
    "v2 crm.item.get": {
        ".result.item: documented keys missing: address, dateCreateShort, dateModifyShort, isConvert, login, parentId1222, parentId1226, parentId1228, parentId1236, parentId1238, parentId1240, parentId1244, parentId1246, parentId1254, parentId1256, productId, shortName, ufCrm_1720019876534": (
            'The documented items carry fields object-fields.md marks "Field is disabled" (dateCreateShort, isWork, productId, …) and portal-specific parentId<n>/ufCrm_<digits>; the sandbox leaves disabled fields out and has its own ufCrm_ fields.'
        ),
        ".result.item: keys not documented: ufCrm_1721244707100, ufCrm_1721244707101, ufCrm_1721244707102, ufCrm_1721244707103, ufCrm_1721244707104, ufCrm_1721244707105": (
            "The sandbox's own six ufCrm_<digits> user fields."
        ),
    },
    "v2 crm.item.productrow.get": {
        ".result.productRow: documented keys missing: storeId": (
            "The recorded real answer of crm.item.productrow.list (tests/fixtures/real-responses/crm_item_productrow_list.json) has no storeId in product rows, while the docs' example shows it; the sandbox's rows follow the recording in every method."
        ),
    },
    "v2 crm.item.productrow.list": {
        ".result.productRows[]: documented keys missing: storeId": (
            "The recorded real answer (tests/fixtures/real-responses/crm_item_productrow_list.json) has no storeId in product rows, while the docs' example shows it; the sandbox follows the recording."
        ),
    },
    "v2 crm.item.update": {
        ".result.item: documented keys missing: begindateShort, closedateShort, dateCreateShort, dateModifyShort, eventDateShort, hasProducts, isLose, isWon, isWork, lostAmount, parentId1220, productId, receivedAmount, ufCrm_1721244707107": (
            'The documented items carry fields object-fields.md marks "Field is disabled" (dateCreateShort, isWork, productId, …) and portal-specific parentId<n>/ufCrm_<digits>; the sandbox leaves disabled fields out and has its own ufCrm_ fields.'
        ),
        ".result.item: keys not documented: ufCrm_1721244707110, ufCrm_1721244707111, ufCrm_1721244707112, ufCrm_1721244707113, ufCrm_1721244707114, ufCrm_1721244707115": (
            "The sandbox's own six ufCrm_<digits> user fields."
        ),
    },
    "v2 crm.lead.fields": {
        ".result: documented keys missing: ADDRESS, ADDRESS_2, ADDRESS_CITY, ADDRESS_COUNTRY, ADDRESS_COUNTRY_CODE, ADDRESS_LOC_ADDR_ID, ADDRESS_POSTAL_CODE, ADDRESS_PROVINCE, ADDRESS_REGION, LINK": (
            "Classic field set: the sandbox has no address, LINK, FACE_ID, IM or LAST_COMMUNICATION_TIME fields (classic methods serve the crm.item catalogue under UPPER_CASE names); PARENT_ID_<n> and UF_CRM_<digits> are the docs portal's own relations and user fields."
        ),
        ".result: keys not documented: EMAIL_HOME, EMAIL_MAILING, EMAIL_WORK, ICQ, IMOL, OBSERVERS, PHONE_MAILING, PHONE_MOBILE, PHONE_WORK, SEARCH_CONTENT, SKYPE, UF_CRM_1721244707100, UF_CRM_1721244707101, UF_CRM_1721244707102, UF_CRM_1721244707103, UF_CRM_1721244707104, UF_CRM_1721244707105, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.lead.get": {
        ".result: documented keys missing: ADDRESS, ADDRESS_2, ADDRESS_CITY, ADDRESS_COUNTRY, ADDRESS_COUNTRY_CODE, ADDRESS_LOC_ADDR_ID, ADDRESS_POSTAL_CODE, ADDRESS_PROVINCE, ADDRESS_REGION, IM": (
            "Classic field set: the sandbox has no address, LINK, FACE_ID, IM or LAST_COMMUNICATION_TIME fields (classic methods serve the crm.item catalogue under UPPER_CASE names); PARENT_ID_<n> and UF_CRM_<digits> are the docs portal's own relations and user fields."
        ),
        ".result: keys not documented: CONTACT_IDS, EMAIL, EMAIL_HOME, EMAIL_MAILING, EMAIL_WORK, ICQ, IMOL, OBSERVERS, PHONE_MAILING, PHONE_MOBILE, PHONE_WORK, SEARCH_CONTENT, SKYPE, UF_CRM_1721244707100, UF_CRM_1721244707101, UF_CRM_1721244707102, UF_CRM_1721244707103, UF_CRM_1721244707104, UF_CRM_1721244707105, WEBFORM_ID": (
            "The classic methods list the documented crm.item fields (object-fields.md) under UPPER_CASE names, which include fields the classic pages do not show (OBSERVERS, SEARCH_CONTENT, EMAIL_HOME, CONTACT_IDS, …), and the sandbox's own UF_CRM_ fields."
        ),
    },
    "v2 crm.lead.list": {
        ".: documented keys missing: next": (
            "Data: the documented portal has 654 leads and more than 50 with OPPORTUNITY 15000; the sandbox's filter leaves fewer than one page, so no `next`."
        ),
    },
    "v2 crm.duplicate.findbycomm": {
        ".result: documented object, sandbox list": (
            "Data: the documented phones match no seeded contact. An empty match is `[]`, as PHP prints every "
            "empty array of a v2 answer (§2.4); a match is the documented object (tests/destination upserts by phone)."
        ),
    },
    "v2 crm.activity.list": {
        ".: documented keys missing: next": (
            "The documented owner has more than 50 activities (total 123456); the sandbox's contacts have a few each, so the page is the last one and carries no `next`."
        ),
        ".time.operating_reset_at: documented iso-datetime, sandbox int": (
            "This page prints `operating_reset_at` as a date; every other captured answer (crm-activity-add.md, crm-status-get.md, …) and §6.1 give a unix time, which the sandbox serves everywhere."
        ),
    },
    "v2 crm.stagehistory.list": {
        ".result.items[]: documented keys missing: CATEGORY_ID, OWNER_ID, STAGE_SEMANTIC_ID, TYPE_ID": (
            "The documented request selects ID, STAGE_ID and CREATED_TIME, but the captured answer shows every field; the sandbox follows the parameter table (`select`: list of fields to retrieve). Without `select` it returns them all."
        ),
    },
    "v2 tasks.task.add": {
        ".result.task: documented keys missing: accomplicesData, action, activityDate, addInReport, allowChangeDeadline, allowTimeTracking, auditorsData, checkListCanAdd, checkListTree, checklist, commentsCount, dateStart, descriptionInBbcode, durationFact, durationPlan, durationType, exchangeId, exchangeModified, favorite, flowId, forkedByTemplateId, forumId, forumTopicId, isMuted, isPinned, isPinnedInGroup, mark, matchWorkTime, multitask, newCommentsCount, notViewed, outlookVersion, replicate, serviceCommentsCount, siteId, sorting, stageId, statusChangedBy, statusChangedDate, subordinate, taskControl, timeSpentInLogs, viewedDate": (
            "v2 task rows carry the fields the sandbox stores (see README, Sandbox data); the documented full task has many more (checklist, counters, durations, …)."
        ),
        ".result.task: keys not documented: realStatus, subStatus, ufCrmTask": (
            "realStatus/subStatus/ufCrmTask/parentId are served as tasks.task.list serves them (§7.4); the documented add/update answer does not show them."
        ),
    },
    "v2 tasks.task.get": {
        ".result.task.ufCrmTask: documented list, sandbox bool": (
            "Data: the replayed task has no CRM links, and an empty UF_CRM_TASK is `false` in v2 task rows (recorded fixture tests/fixtures/real-responses/single_add.json)."
        ),
        ".result.task: documented keys missing: action, descriptionInBbcode, favorite, ufMailMessage, ufTaskWebdavFiles": (
            "v2 task rows carry the fields the sandbox stores (see README, Sandbox data); the documented full task has many more (checklist, counters, durations, …)."
        ),
    },
    "v2 tasks.task.getfields": {
        ".result.fields.STATUS.values: keys not documented: 7": (
            "STATUS 7 (declined): generated tasks can be declined (api-reference/tasks/fields.md lists 7); the getFields page stops at 6 (README)."
        ),
        ".result.fields: documented keys missing: ACTIVITY_DATE, ADD_IN_REPORT, ALLOW_CHANGE_DEADLINE, ALLOW_TIME_TRACKING, BACKLOG_ID, CHECKLIST, COMMENTS_COUNT, DATE_START, DURATION_FACT, DURATION_PLAN, DURATION_TYPE, EXCHANGE_ID, EXCHANGE_MODIFIED, FAVORITE, FLOW_ID, FORKED_BY_TEMPLATE_ID, FORUM_ID, FORUM_TOPIC_ID, IS_MUTED, IS_PINNED, IS_PINNED_IN_GROUP, MARK, MATCH_WORK_TIME, MULTITASK, NEW_COMMENTS_COUNT, NOT_VIEWED, OUTLOOK_VERSION, REPLICATE, SERVICE_COMMENTS_COUNT, SITE_ID, SORTING, SPRINT_ID, STAGE_ID, STATUS_CHANGED_BY, STATUS_CHANGED_DATE, SUBORDINATE, TASK_CONTROL, TIME_SPENT_IN_LOGS, UF_MAIL_MESSAGE, UF_NEW_TASKS_FIELD, UF_TASK_WEBDAV_FILES, VIEWED_DATE": (
            "v2 task rows carry the fields the sandbox stores (see README, Sandbox data); the documented full task has many more (checklist, counters, durations, …)."
        ),
    },
    "v2 tasks.task.update": {
        ".result.task: documented keys missing: accomplicesData, action, activityDate, addInReport, allowChangeDeadline, allowTimeTracking, auditorsData, backlogId, checkListCanAdd, checkListTree, checklist, commentsCount, dateStart, descriptionInBbcode, durationFact, durationPlan, durationType, exchangeId, exchangeModified, favorite, flowId, forkedByTemplateId, forumId, forumTopicId, isMuted, isPinned, isPinnedInGroup, mark, matchWorkTime, multitask, newCommentsCount, notViewed, outlookVersion, replicate, serviceCommentsCount, siteId, sorting, sprintId, stageId, statusChangedBy, statusChangedDate, subordinate, taskControl, timeSpentInLogs, viewedDate": (
            "v2 task rows carry the fields the sandbox stores (see README, Sandbox data); the documented full task has many more (checklist, counters, durations, …)."
        ),
        ".result.task: keys not documented: parentId, realStatus, subStatus, ufCrmTask": (
            "realStatus/subStatus/ufCrmTask/parentId are served as tasks.task.list serves them (§7.4); the documented add/update answer does not show them."
        ),
    },
    "v2 user.admin": {
        ".: documented keys missing: result, time": (
            "Not served by the sandbox (ERROR_METHOD_NOT_FOUND). The product does not call it (it only lists it as a read method for retries)."
        ),
        ".: keys not documented: error, error_description": (
            "Not served by the sandbox (ERROR_METHOD_NOT_FOUND). The product does not call it (it only lists it as a read method for retries)."
        ),
        "HTTP status: documented 200, sandbox 404": (
            "Not served by the sandbox (ERROR_METHOD_NOT_FOUND). The product does not call it (it only lists it as a read method for retries)."
        ),
    },
    "v2 user.current": {
        ".result: keys not documented: PERSONAL_CITY, PERSONAL_MOBILE, SECOND_NAME, TIME_ZONE, USER_TYPE, WORK_PHONE, XML_ID": (
            "user.current rows carry the user fields the sandbox stores (SECOND_NAME, TIME_ZONE, …); the documented answers are of portals whose users have other fields filled."
        ),
    },
    "v2 user.fields": {
        ".result: documented keys missing: PERSONAL_COUNTRY, PERSONAL_FAX, PERSONAL_ICQ, PERSONAL_MAILBOX, PERSONAL_NOTES, PERSONAL_PAGER, PERSONAL_PHONE, PERSONAL_PHOTO, PERSONAL_PROFESSION, PERSONAL_STATE, PERSONAL_STREET, PERSONAL_WWW, PERSONAL_ZIP, TITLE, UF_DISTRICT, UF_INTERESTS, UF_LINKEDIN, UF_PHONE_INNER, UF_SKILLS, UF_SKYPE, UF_SKYPE_LINK, UF_TIMEMAN, UF_TWITTER, UF_WEB_SITES, UF_XING, UF_ZOOM, WORK_CITY, WORK_COMPANY, WORK_COUNTRY, WORK_DEPARTMENT, WORK_FAX, WORK_LOGO, WORK_MAILBOX, WORK_NOTES, WORK_PAGER, WORK_PROFILE, WORK_STATE, WORK_STREET, WORK_WWW, WORK_ZIP": (
            "user.fields lists the user fields the sandbox stores."
        ),
    },
    "v2 user.get": {
        ".result[].LAST_ACTIVITY_DATE: documented object, sandbox iso-datetime": (
            "Documented as {} in user.get rows; the sandbox prints the dates (README: Choices where the protocol notes are uncertain)."
        ),
        ".result[].TIMESTAMP_X: documented object, sandbox iso-datetime": (
            "Documented as {} in user.get rows; the sandbox prints the dates (README: Choices where the protocol notes are uncertain)."
        ),
        ".result[]: documented keys missing: PERSONAL_WWW": (
            "The sandbox stores XML_ID but no PERSONAL_WWW for users."
        ),
        ".result[]: keys not documented: XML_ID": (
            "The sandbox stores XML_ID but no PERSONAL_WWW for users."
        ),
    },
    "v3 tasks.task.add": {
        ".result.item: documented keys missing: activity, actualDuration, addInReport, allowsChangeDatePlan, allowsChangeDeadline, allowsTimeTracking, archiveLink, autocompleteSubTasks, chatId, checklist, containsChecklist, containsGanttLinks, containsPlacements, containsRelatedTasks, containsSubTasks, deadlineCount, declineReason, dependsOn, durationType, epicId, exchangeId, exchangeModified, fileIds, forumTopicId, inFavorite, inGroupPin, inMute, inPin, isMultitask, link, mark, matchesSubTasksTime, matchesWorkTime, maxDeadlineChangeDate, maxDeadlineChanges, numberOfReminders, outlookVersion, plannedDuration, replicate, requireDeadlineChangeReason, requireResult, rights, scenarios, siteId, started, storyPoints": (
            "The documented add answer carries task features the sandbox does not emulate (checklist, chat, durations, rights, Exchange, …)."
        ),
    },
    "v3 tasks.task.get": {
        ".: keys not documented: time": (
            "The documented answer omits `time`; every v3 answer carries it (rest-v3.md)."
        ),
        ".result.item: documented keys missing: activity, actualDuration, addInReport, allowsChangeDatePlan, allowsChangeDeadline, allowsTimeTracking, archiveLink, autocompleteSubTasks, changed, chatId, checklist, closed, containsChecklist, containsGanttLinks, containsPlacements, containsRelatedTasks, containsResults, containsSubTasks, crmItemIds, deadline, deadlineCount, declineReason, dependsOn, description, durationType, endPlan, epicId, estimatedTime, exchangeId, exchangeModified, fileIds, forumTopicId, guid, inFavorite, inGroupPin, inMute, inPin, isMultitask, link, mark, matchesSubTasksTime, matchesWorkTime, maxDeadlineChangeDate, maxDeadlineChanges, needsControl, numberOfReminders, outlookVersion, parentId, plannedDuration, priority, replicate, requireDeadlineChangeReason, requireResult, rights, scenarios, siteId, startPlan, started, status, statusChanged, storyPoints, title, xmlId": (
            "The documented answer lists far more fields than its request selects (responsible.name, responsible.email); the sandbox returns the selection."
        ),
    },
    "v3 tasks.task.update": {
        ".: documented keys missing: result, time": (
            "The page contradicts itself: its request sets creatorId, its error section says creatorId is not editable. The sandbox follows the error section."
        ),
        ".: keys not documented: error": (
            "The page contradicts itself: its request sets creatorId, its error section says creatorId is not editable. The sandbox follows the error section."
        ),
        "HTTP status: documented 200, sandbox 400": (
            "The page contradicts itself: its request sets creatorId, its error section says creatorId is not editable. The sandbox follows the error section."
        ),
    },
}


# Documented error answers the sandbox triggers (test_errors.TRIGGERS) but answers differently.
ERROR_DIFFERENCES: dict[str, str] = {
    "v2 crm.stagehistory.list": (
        "The example has `error: 0` and names the type by its code (`SHIPMENT_DOCUMENT entity is not supported`); "
        "the page's error table gives `ENTITY_TYPE_NOT_SUPPORTED` with `Entity type TYPE is not supported`, which "
        "the sandbox answers (as crm.category.list's table words it)."
    ),
    "v2 crm.status.entity.items": (
        "The example puts the description's text in `error` and an English paraphrase in `error_description`; "
        "the page's error table gives `The parameter entityId is not defined or invalid.` as the description. "
        'The sandbox follows the table (classic `error: ""` envelope).'
    ),
    "v2 tasks.task.result.list": (
        "The documented text names the parameter `{commentId}` (copied from the result-from-comment method); "
        'the sandbox names the parameter it checks, `{taskId}`. Same code "100".'
    ),
}

# Documented error answers the sandbox cannot cause, with the reason.
UNTRIGGERED: dict[str, str] = {
    "v2 crm.activity.add": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.activity.delete": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.activity.fields": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.activity.list": (
        "`Https required` is an OAuth-over-http refusal; the sandbox serves http on loopback (https with the tls "
        "option) to every caller."
    ),
    "v2 crm.activity.update": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.type.list": "Access rights are not emulated: every call runs as an administrator.",
    "v2 app.info": "Not served (see the replay deviations).",
    "v2 batch": (
        "The example is a batch whose commands fail with insufficient_scope; scopes are a Sandbox option "
        "(tests/sandbox/test_auth.py covers insufficient_scope), not part of this portal."
    ),
    "v2 crm.company.delete": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.company.fields": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.company.list": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.contact.list": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.deal.get": "The page's error example (`Parameter 'fields' must be array.`) belongs to another method.",
    "v2 crm.item.productrow.fields": 'The example is a placeholder (`"error": 0, "some error"`).',
    "v2 crm.item.productrow.list": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.lead.add": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.lead.list": "Access rights are not emulated: every call runs as an administrator.",
    "v2 crm.status.list": "The page does not say which request gives `Invalid parameters.`; the sandbox has no such check.",
    "v2 tasks.task.delete": "Access rights are not emulated (`1048582`, no access to delete the task).",
    "v2 tasks.task.get": (
        "The example's value is a placeholder (`Invalid value {} … {select}`); a JSON `{}` is an empty PHP "
        "array, which the sandbox accepts as no select."
    ),
}


BEGIN = "<!-- generated from tests/conformance/deviations.py: python -m tests.conformance.deviations -->"
END = "<!-- end of generated part -->"


def render() -> str:
    """The generated part of docs/sandbox-deviations.md: every listed difference with its reason."""
    lines = [BEGIN, "", "### Replayed requests (test_replay.py)", ""]
    for key in sorted(KNOWN):
        lines.append(f"**{key}**")
        lines.append("")
        by_reason: dict[str, list[str]] = {}
        for diff, reason in sorted(KNOWN[key].items()):
            by_reason.setdefault(reason, []).append(diff)
        for reason, diffs in by_reason.items():
            shown = "; ".join(f"`{d}`" if len(d) <= 160 else f"`{d[:157]}...`" for d in diffs)
            lines.append(f"- {shown}: {reason}")
        lines.append("")
    lines += ["### Documented errors answered differently (test_errors.py)", ""]
    lines += [f"- **{key}**: {reason}" for key, reason in sorted(ERROR_DIFFERENCES.items())]
    lines += ["", "### Documented errors the sandbox cannot cause (test_errors.py)", ""]
    lines += [f"- **{key}**: {reason}" for key, reason in sorted(UNTRIGGERED.items())]
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "sandbox-deviations.md"
    text = doc.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(head + render() + tail, encoding="utf-8")
